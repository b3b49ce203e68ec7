"""``gm-jax sample --prompt`` end to end: a tiny KL autoencoder, a tiny text-conditioned latent diffusion run
on its latents (captioned embedded Fashion-MNIST), prompted draws written as one captioned grid and an .npz;
bad prompts are one line, exit 2, and leave the work directory as it was."""

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from gm_jax.cli import main

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"


def _common(data_dir):
    return [f"--config.data.data_dir={data_dir}", "--config.data.name=fashion_mnist_small",
            "--config.data.num_examples=64", "--config.data.batch_size=16", "--config.train.num_steps=2",
            "--config.train.checkpoint_every=2", "--config.train.log_every=1", "--config.train.progress=false",
            "--config.train.num_samples=4", "--config.train.eval_batches=1", "--config.train.sample_every=0",
            "--config.train.eval_every=0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    base = tmp_path_factory.mktemp("t2i")
    ae, ldm = str(base / "ae"), str(base / "ldm")
    assert main(["train", str(CONFIGS / "kl_autoencoder_fashion_mnist.py"), "--workdir", ae, *_common(data_dir),
                 "--config.model.channels=(4,8)", "--config.model.latent_channels=2"]) == 0
    assert main(["train", str(CONFIGS / "ldm_text_fashion_mnist.py"), "--workdir", ldm, *_common(data_dir),
                 "--config.data.captions=true", f"--config.model.first_stage={ae}", "--config.model.unet=tiny",
                 "--config.model.attn_resolutions=(7,)", "--config.model.num_heads=2", "--config.model.text_width=8",
                 "--config.model.text_depth=1", "--config.model.text_heads=2", "--config.model.num_timesteps=20",
                 "--config.model.max_sample_steps=20", "--config.model.sample_steps=2"]) == 0
    (base / "prompts.txt").write_text("a photo of a bag\n\n  a small dark sneaker \n")
    return base, ae, ldm


def _tree_hash(path):
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(full.encode() + open(full, "rb").read())
    return digest.hexdigest()


def test_prompted_samples_are_one_captioned_grid(runs, capsys):
    base, _, ldm = runs
    assert os.path.exists(os.path.join(ldm, "vocabulary.json"))
    capsys.readouterr()
    out = str(base / "out" / "t2i")
    assert main(["sample", "--workdir", ldm, "--prompt", "a dark ankle boot", "--prompt_file",
                 str(base / "prompts.txt"), "--negative_prompt", "a bag", "--num", "2", "--guidance", "3",
                 "--sampler", "dpm_solver_2m", "--steps", "2", "--out", out]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["prompts"] == ["a dark ankle boot", "a photo of a bag", "a small dark sneaker"]
    assert info["nfe"] == 2 and os.path.exists(info["png"])
    x = np.load(info["npz"])["samples"]
    assert x.shape == (6, 28, 28, 1) and x.min() >= -1.0 and x.max() <= 1.0
    assert main(["sample", "--workdir", ldm, "--num", "3", "--steps", "2", "--out", out + "_classes"]) == 0


@pytest.mark.parametrize("argv, words", [
    (["--prompt", "a dark ankle boots"], "unknown word 'boots' in prompt 0; closest vocabulary words: 'boot'"),
    (["--prompt", "a photo of a small dark ankle boot on the left and a bag"], "max_length is 13"),
    (["--prompt_file", "/nonexistent/prompts.txt"], "--prompt_file '/nonexistent/prompts.txt' cannot be read"),
    (["--prompt", "a bag", "--label", "3"], "label"),
])
def test_bad_prompts_are_one_line_and_change_nothing(runs, capsys, argv, words):
    _, _, ldm = runs
    before = _tree_hash(ldm)
    capsys.readouterr()
    assert main(["sample", "--workdir", ldm, "--num", "1", "--steps", "2", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gm-jax: error:") and "\n" not in err and words in err, err
    assert _tree_hash(ldm) == before


def test_a_prompt_to_a_model_without_text_is_one_line(runs, capsys):
    _, ae, _ = runs
    before = _tree_hash(ae)
    capsys.readouterr()
    assert main(["sample", "--workdir", ae, "--num", "1", "--prompt", "a bag"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gm-jax: error:") and "not text-conditioned" in err and "\n" not in err, err
    assert _tree_hash(ae) == before
