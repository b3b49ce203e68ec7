"""The gm-jax command line: a tiny end-to-end run, and one clear line with exit status 2 for bad input."""

import json
import os
from pathlib import Path

import pytest

from gm_jax.cli import main

CONFIG = str(Path(__file__).resolve().parents[1] / "experiments" / "configs" / "vae.py")


def tiny(data_dir, *extra):
    return [f"--config.data.data_dir={data_dir}", "--config.data.num_examples=64", "--config.data.batch_size=16",
            "--config.model.channels=(4,8)", "--config.model.latent_dim=2", "--config.model.eval_iwae_k=2",
            "--config.model.iwae_chunk=2", "--config.train.num_steps=2", "--config.train.checkpoint_every=1",
            "--config.train.log_every=1", "--config.train.progress=false", "--config.train.num_samples=4",
            "--config.train.eval_batches=1", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    workdir = str(tmp_path_factory.mktemp("cli") / "run")
    assert main(["train", CONFIG, "--workdir", workdir, *tiny(data_dir)]) == 0
    return workdir


def one_error_line(capsys, words):
    err = capsys.readouterr().err.strip()
    assert err.startswith("gm-jax: error:") and "\n" not in err and "Traceback" not in err, err
    assert words in err, err


def test_train_sample_eval(trained, capsys):
    assert sorted(os.listdir(os.path.join(trained, "checkpoints")))[-1] == "2"
    capsys.readouterr()
    assert main(["sample", "--workdir", trained, "--num", "6", "--seed", "3"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["num"] == 6 and os.path.exists(info["png"])
    import numpy as np
    x = np.load(info["npz"])["samples"]
    assert x.shape == (6, 28, 28, 1) and x.min() >= 0.0 and x.max() <= 1.0
    assert main(["eval", "--workdir", trained, "--num_batches", "1", "--metrics", "fid,kid,is,prdc",
                 "--num", "40"]) == 0
    report = json.load(open(os.path.join(trained, "eval.json")))
    assert report["step"] == 2 and np.isfinite(report["eval/elbo"])
    quality = report["sample_quality"]
    assert quality["num_samples"] == 40 and quality["extractor"]["name"] == "fashion_mnist_cnn"
    assert len(quality["extractor"]["checksum"]) == 64
    m = quality["metrics"]
    assert m["fid"]["value"] > 0 and 1.0 <= m["is"]["value"] <= 10.0 and np.isfinite(m["kid"]["std"])
    assert all(0.0 <= m[k]["value"] <= 1.0 for k in ("precision", "recall", "coverage"))
    assert os.path.exists(quality["nearest_neighbours_png"])


@pytest.mark.parametrize("extra, words", [
    (["--config.data.name=imagenet"], "unknown dataset"),
    (["--config.model.family=transformer"], "unknown model.family 'transformer'"),
    (["--config.optim.lr=1"], "unknown config field 'config.optim.lr'"),
    (["--config.train.num_steps=many"], "--config.train.num_steps expects a int"),
    (["--config.data.batch_size=12"], "does not divide over 8 devices"),
    (["--config.model.arch=transformer"], "transformer"),
])
def test_bad_train_input(tmp_path, data_dir, capsys, extra, words):
    workdir = str(tmp_path / "w")
    assert main(["train", CONFIG, "--workdir", workdir, *tiny(data_dir, *extra)]) == 2
    one_error_line(capsys, words)


def test_missing_config_file_and_unwritable_workdir(tmp_path, data_dir, capsys):
    assert main(["train", str(tmp_path / "nope.py"), "--workdir", str(tmp_path / "w")]) == 2
    one_error_line(capsys, "not found")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", CONFIG, "--workdir", str(blocker / "run"), *tiny(data_dir)]) == 2
    one_error_line(capsys, "not writable")


def test_missing_and_corrupt_checkpoint(tmp_path, trained, capsys):
    assert main(["sample", "--workdir", str(tmp_path / "empty")]) == 2
    one_error_line(capsys, "no config.json")
    # a copy of the trained run whose latest checkpoint is damaged: sampling falls back to step 1, says so
    # in one line and keeps the damaged step aside
    import shutil
    broken = str(tmp_path / "broken")
    shutil.copytree(trained, broken)
    damaged = []
    for root, _, files in os.walk(os.path.join(broken, "checkpoints", "2")):
        for f in files:
            if f.startswith("manifest") or f.endswith(".ocdbt") or "ocdbt" in root:
                with open(os.path.join(root, f), "wb") as fh:
                    fh.write(b"garbage")
                damaged.append(f)
    assert damaged
    capsys.readouterr()
    assert main(["sample", "--workdir", broken, "--num", "2"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert any("checkpoint 2 is corrupt" in line and "using 1" in line for line in err), err
    assert os.path.isdir(os.path.join(broken, "checkpoints", "1"))
    assert not os.path.exists(os.path.join(broken, "checkpoints", "2"))
    assert os.listdir(os.path.join(broken, "checkpoints", "corrupt"))  # kept aside, not deleted
    # with every step damaged: one line, exit 2
    for root, _, files in os.walk(os.path.join(broken, "checkpoints", "1")):
        for f in files:
            if f != "gm_jax_manifest.json":
                with open(os.path.join(root, f), "ab") as fh:
                    fh.write(b"x")
    assert main(["sample", "--workdir", broken]) == 2
    one_error_line(capsys, "verifies")


def test_finished_run_is_left_untouched(trained, data_dir, capsys):
    def snapshot():
        out = {}
        for root, _, files in os.walk(trained):
            for f in files:
                p = os.path.join(root, f)
                out[os.path.relpath(p, trained)] = open(p, "rb").read()
        return out

    before = snapshot()
    capsys.readouterr()
    assert main(["train", CONFIG, "--workdir", trained, *tiny(data_dir)]) == 0
    assert "complete at step 2; nothing to do" in capsys.readouterr().out
    after = snapshot()
    assert after.keys() == before.keys() and all(after[k] == before[k] for k in before)  # no new lines or events


def test_resume_with_a_different_config_is_refused(trained, data_dir, capsys):
    before = open(os.path.join(trained, "config.json")).read()
    assert main(["train", CONFIG, "--workdir", trained, *tiny(data_dir, "--config.model.latent_dim=3")]) == 2
    one_error_line(capsys, "different config (model.latent_dim)")
    assert open(os.path.join(trained, "config.json")).read() == before


def test_unknown_metric(trained, capsys):
    assert main(["eval", "--workdir", trained, "--metrics", "fid,lpips"]) == 2
    one_error_line(capsys, "unknown metric 'lpips'")


def test_sampler_flags_the_model_does_not_take(trained, capsys):
    assert main(["sample", "--workdir", trained, "--eta", "0.5"]) == 2
    one_error_line(capsys, "does not take --eta")
