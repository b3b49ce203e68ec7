"""``gm-jax restore`` and ``gm-jax edit`` on a tiny trained image diffusion run: every inverse method writes
one PNG grid and one .npz of the right shapes, DDNM and DDRM reproduce the observed pixels at σ_y = 0,
SDEdit and inversion edit, the inputs are never touched; bad input that needs the loaded model is one line.

The run is a 2-step DDPM on 64 embedded Fashion-MNIST images in [0, 1] (so the map to the model's [−1, 1] is
exercised) with a tiny MLP denoiser (a U-Net compiles several times slower on a CPU) and T = 20."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gm_jax.cli import main

DDPM = str(Path(__file__).resolve().parents[1] / "experiments" / "configs" / "ddpm_fashion_mnist.py")


def tiny_diffusion(data_dir):
    return [f"--config.data.data_dir={data_dir}", "--config.data.name=fashion_mnist_small",
            "--config.data.num_examples=64", "--config.data.batch_size=16",
            "--config.data.scale=zero_one", "--config.model.network=mlp", "--config.model.mlp_hidden=(16,)",
            "--config.model.mlp_emb_dim=8", "--config.model.num_timesteps=20", "--config.model.max_sample_steps=20",
            "--config.model.sample_steps=3", "--config.model.eval_num_t=2", "--config.train.num_steps=2",
            "--config.train.checkpoint_every=2", "--config.train.log_every=1", "--config.train.progress=false",
            "--config.train.num_samples=4", "--config.train.eval_batches=1", "--config.train.sample_every=0",
            "--config.train.eval_every=0"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, data_dir):
    """A trained tiny diffusion run and the input files: one grayscale PNG, an .npz of two float images in
    [0, 1], a binary mask PNG (a 10 x 10 hole) and, for the bad cases, a 32 x 32 PNG and out-of-range values."""
    base = tmp_path_factory.mktemp("restore")
    assert main(["train", DDPM, "--workdir", str(base / "run"), *tiny_diffusion(data_dir)]) == 0
    rs = np.random.RandomState(0)
    Image.fromarray((rs.rand(28, 28) * 255).astype(np.uint8)).save(base / "img.png")
    np.savez(base / "imgs.npz", images=rs.rand(2, 28, 28, 1).astype(np.float32))
    mask = np.full((28, 28), 255, np.uint8)
    mask[6:16, 9:19] = 0
    Image.fromarray(mask).save(base / "mask.png")
    Image.fromarray((rs.rand(32, 32) * 255).astype(np.uint8)).save(base / "big.png")
    np.savez(base / "wide.npz", images=(2.0 * rs.rand(1, 28, 28, 1) - 1.0).astype(np.float32))
    return base


def _hashes(base):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in base.iterdir() if p.is_file()}


def _run(capsys, argv):
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    info = json.loads(captured.out.strip().splitlines()[-1])
    assert os.path.isfile(info["png"]) and os.path.isfile(info["npz"])
    return info, np.load(info["npz"])


# (method, task flags, input, extra flags); each method once, on a different task
RESTORE_RUNS = [
    ("ddnm", ["--task", "inpaint", "--mask", "{B}/mask.png"], "imgs.npz", []),
    ("ddrm", ["--task", "inpaint", "--mask", "{B}/mask.png"], "img.png", ["--eta", "0.5"]),
    ("repaint", ["--task", "inpaint", "--mask_kind", "half:right"], "img.png", ["--resample", "1"]),
    ("dps", ["--task", "superres", "--scale", "4"], "img.png", ["--sigma_y", "0.05", "--zeta", "0.5"]),
    ("pigdm", ["--task", "deblur", "--blur_sigma", "1.5"], "imgs.npz", ["--sigma_y", "0.02"]),
]


def test_restore_with_every_method_and_edit(setup, capsys):
    before = _hashes(setup)
    mask = np.asarray(Image.open(setup / "mask.png")) == 255
    for method, task, name, extra in RESTORE_RUNS:
        argv = ["restore", "--workdir", str(setup / "run"), "--method", method, "--input", str(setup / name),
                "--steps", "3", "--num", "2", "--out", str(setup / "out" / method), *extra]
        info, out = _run(capsys, argv + [a.replace("{B}", str(setup)) for a in task])
        b = 2 if name.endswith(".npz") else 1
        resample = 1 if method == "repaint" else 0
        assert info["method"] == method and info["nfe"] == int(out["nfe"]) == 3 + resample * 2
        assert out["input"].shape == (b, 28, 28, 1) and out["restorations"].shape == (2, b, 28, 28, 1)
        assert out["mean"].shape == out["std"].shape == (b, 28, 28, 1)
        assert out["y"].shape == ((b, 7, 7, 1) if method == "dps" else (b, 28, 28, 1))
        assert 0.0 <= out["restorations"].min() and out["restorations"].max() <= 1.0
        np.testing.assert_allclose(out["mean"], out["restorations"].mean(0), atol=1e-6)
        # rows: input, A⁺y, 2 restorations, mean, std; b columns (2-pixel padding, upscaled x2)
        assert Image.open(info["png"]).size == (2 * (b * 30 + 2), 2 * (6 * 30 + 2))
        if method in ("ddnm", "ddrm"):  # σ_y = 0 on a mask: the observed pixels are the input's
            err = np.abs(out["restorations"] - out["input"][None])[:, :, mask].max()
            assert err < 1e-5, (method, err)
            assert np.abs(out["restorations"] - out["input"][None])[:, :, ~mask].max() > 1e-3
    info, out = _run(capsys, ["edit", "--workdir", str(setup / "run"), "--input", str(setup / "img.png"),
                              "--strength", "0.6", "--steps", "5", "--num", "3", "--label", "2",
                              "--out", str(setup / "out" / "sdedit")])
    assert info["edit"] == "sdedit" and info["nfe"] == 3 and out["edits"].shape == (3, 1, 28, 28, 1)
    assert not np.allclose(out["edits"][0], out["edits"][1])  # each edit draws its own noise
    info, out = _run(capsys, ["edit", "--workdir", str(setup / "run"), "--input", str(setup / "imgs.npz"),
                              "--invert", "--strength", "1", "--steps", "4", "--out", str(setup / "out" / "inv")])
    assert info["edit"] == "invert" and info["num"] == 1 and info["nfe"] == 8  # 4 encoder + 4 decoder calls
    assert out["edits"].shape == (1, 2, 28, 28, 1) and np.all(np.isfinite(out["edits"]))
    assert _hashes(setup) == before  # the inputs (and nothing else at the top) unchanged


@pytest.mark.parametrize("argv, words", [
    (["restore", "--task", "inpaint", "--input", "{B}/big.png"], "the images are 32x32, but the model takes 28x28"),
    (["restore", "--task", "colourize", "--input", "{B}/img.png"], "--task colourize needs an RGB model"),
    (["restore", "--task", "inpaint", "--input", "{B}/img.png", "--steps", "21"], "--steps must be"),
    (["edit", "--input", "{B}/wide.npz"], "outside the model's value range [0, 1]"),
    (["edit", "--input", "{B}/img.png", "--label", "10"], "--label must be in [0, 9]"),
], ids=["wrong_size", "colourize_grayscale", "steps_above_schedule", "values_out_of_range", "label_out_of_range"])
def test_bad_input_after_loading_is_one_line(setup, capsys, argv, words):
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in setup.rglob("*") if p.is_file()}
    capsys.readouterr()
    code = main([argv[0], "--workdir", str(setup / "run"), *[a.replace("{B}", str(setup)) for a in argv[1:]],
                 "--out", str(setup / "bad" / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("gm-jax: error:") and "\n" not in err and "Traceback" not in err, err
    assert words in err, err
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in setup.rglob("*") if p.is_file()} == before
    assert not (setup / "bad").exists()


def test_restore_and_edit_from_a_pretrained_model_equal_the_workdir(setup, capsys, tmp_path, monkeypatch):
    """The run exported to a gallery (float32) restores and edits exactly as its work directory does, with the
    default outputs under ./restore_NAME and ./edit_NAME."""
    from gm_jax.pretrained import gallery
    from gm_jax.pretrained.export import export_run

    export_run(str(setup / "run"), "tiny_ddpm", "float32", tmp_path / "weights", num_batches=1, check_num=16)
    monkeypatch.setattr(gallery, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.chdir(tmp_path)
    task = ["--task", "inpaint", "--mask", str(setup / "mask.png"), "--input", str(setup / "img.png"),
            "--method", "ddnm", "--steps", "3", "--num", "2"]
    _, by_dir = _run(capsys, ["restore", "--workdir", str(setup / "run"), *task, "--out", str(tmp_path / "w")])
    info, by_name = _run(capsys, ["restore", "--pretrained", "tiny_ddpm", *task])
    assert info["png"] == os.path.join("restore_tiny_ddpm", "restore_inpaint.png")
    np.testing.assert_array_equal(by_name["restorations"], by_dir["restorations"])
    edit = ["--input", str(setup / "img.png"), "--strength", "0.6", "--steps", "5", "--num", "2"]
    _, by_dir = _run(capsys, ["edit", "--workdir", str(setup / "run"), *edit, "--out", str(tmp_path / "e")])
    info, by_name = _run(capsys, ["edit", "--pretrained", "tiny_ddpm", *edit])
    assert info["png"] == os.path.join("edit_tiny_ddpm", "edit.png")
    np.testing.assert_array_equal(by_name["edits"], by_dir["edits"])
