"""experiments/restoration_table.py and experiments/editing_study.py end to end on the shipped gallery DDPM
with a handful of images and steps: the baselines' scores equal an independent numpy computation, the
methods that promise it fit their measurement, and bad arguments are one line."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from gm_jax.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


table = _load("restoration_table")
editing = _load("editing_study")


def test_task_names_build_their_operators():
    assert table.operator_for("box", (28, 28, 1), 0).y_shape == (28, 28, 1)
    assert table.operator_for("sr4", (28, 28, 1), 0).y_shape == (7, 7, 1)
    assert table.is_mask("random30") and not table.is_mask("sr2")
    observed = np.asarray(table.operator_for("random30", (28, 28, 1), 0).A(np.ones((1, 28, 28, 1), np.float32)))
    assert 0.2 < observed.mean() < 0.4
    with pytest.raises(ConfigError, match="unknown task"):
        table.operator_for("sr", (28, 28, 1), 0)


def test_restoration_table_end_to_end(tmp_path, capsys):
    out = tmp_path / "table"
    rc = table.main(["--pretrained", "ddpm_fashion_mnist", "--out", str(out), "--num", "4", "--steps", "2",
                     "--chunk", "4", "--tasks", "box,sr4", "--methods", "ddrm,repaint"])
    assert rc == 0
    payload = json.loads((out / "restoration_table.json").read_text())
    rows = {(r["task"], r["method"]): r for r in payload["records"]}
    assert set(rows) == {("box", "pinv"), ("box", "ddrm"), ("box", "repaint"), ("sr4", "pinv"),
                         ("sr4", "bicubic"), ("sr4", "ddrm")}  # no RePaint on pooling
    assert rows["box", "ddrm"]["nfe"] == 2 and rows["box", "repaint"]["nfe"] == 3  # 2 + 1 resampling step
    assert rows["box", "ddrm"]["consistency_rms"] == 0.0 and rows["box", "repaint"]["consistency_rms"] == 0.0
    # A⁺y of the box task: the image with the centred 14×14 box set to 0; PSNR by hand (R = 2)
    from gm_jax.pretrained.loading import pretrained_run
    from gm_jax.train.quality import real_images

    x = real_images(pretrained_run("ddpm_fashion_mnist")[0], 4)
    filled = x.copy()
    filled[:, 7:21, 7:21] = 0.0
    mse = np.mean((filled - x) ** 2, axis=(1, 2, 3))
    assert abs(rows["box", "pinv"]["psnr"] - np.mean(10 * np.log10(4 / mse))) < 1e-3
    assert (out / "grid_box.png").exists() and (out / "restoration_table.md").exists()
    capsys.readouterr()
    assert table.main(["--pretrained", "ddpm_fashion_mnist", "--out", str(tmp_path / "bad"),
                       "--methods", "ddrm,magic"]) == 2
    assert capsys.readouterr().err.strip().startswith("restoration_table: error: unknown method(s) magic")
    assert not (tmp_path / "bad").exists()


def test_trained_models_join_the_table_on_the_tasks_they_do(tmp_path, data_dir):
    """--models: a (tiny) SRGAN x2 run restores sr2 only, with its own method and one network evaluation; its
    restoration is the generator's translation of the ground truth (the same measurement)."""
    import jax

    from gm_jax.cli import main
    from gm_jax.pretrained.loading import pretrained_run
    from gm_jax.train.quality import real_images
    from gm_jax.train.workdir import load_workdir
    from tests.conftest import tiny_run_flags

    run_dir = str(tmp_path / "srgan")
    assert main(["train", str(ROOT / "experiments" / "configs" / "srgan_fashion_mnist.py"), "--workdir", run_dir,
                 *tiny_run_flags(data_dir), "--config.model.features=4", "--config.model.num_blocks=1",
                 "--config.model.scale=2", "--config.train.eval_batch_size=16"]) == 0
    out = tmp_path / "table"
    assert table.main(["--pretrained", "ddpm_fashion_mnist", "--out", str(out), "--num", "4", "--steps", "2",
                       "--chunk", "4", "--tasks", "box,sr2,sr4", "--methods", "ddrm", "--models", run_dir]) == 0
    payload = json.loads((out / "restoration_table.json").read_text())
    mine = [r for r in payload["records"] if r.get("model") == run_dir]
    assert [(r["task"], r["method"], r["nfe"]) for r in mine] == [("sr2", "srgan", 1)]
    run, state = load_workdir(run_dir)
    x = real_images(pretrained_run("ddpm_fashion_mnist")[0], 4)
    translated = np.asarray(run.family.sample(state.sampling_params(), jax.random.key(0), 4, source=x)[0])
    import jax.numpy as jnp

    from gm_jax.metrics import psnr
    want = float(np.mean(np.asarray(psnr(jnp.asarray(translated), jnp.asarray(x)))))
    assert abs(mine[0]["psnr"] - want) < 1e-3


def test_editing_study_end_to_end(tmp_path):
    out = tmp_path / "edit"
    assert editing.main(["--pretrained", "ddpm_fashion_mnist", "--out", str(out), "--pairs", "0:2",
                         "--strengths", "0.5,1.0", "--num", "3", "--steps", "2"]) == 0
    records = json.loads((out / "editing_study.json").read_text())["records"]
    assert [(r["mode"], r["strength"]) for r in records] == [("sdedit", 0.5), ("sdedit", 1.0), ("invert", 0.5),
                                                            ("invert", 1.0)]
    for r in records:
        assert 0.0 <= r["target_fraction"] + r["source_fraction"] <= 1.0 and -1.0 <= r["ssim_to_source"] <= 1.0
    assert (out / "editing_vs_strength.png").exists() and (out / "grid_0_2.png").exists()
    with pytest.raises(SystemExit):
        editing.parse_args(["--pretrained", "x", "--out", "y", "--strengths", "0,0.5"])
