"""``gm-jax sample --prompt`` end to end: a tiny KL autoencoder, a tiny text-conditioned latent diffusion run
on its latents (captioned embedded Fashion-MNIST), prompted draws written as one captioned grid and an .npz;
bad prompts are one line, exit 2, and leave the work directory as it was."""

import hashlib
import json
import os

import numpy as np
import pytest

from gm_jax.cli import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory, text_to_image_runs):
    base = tmp_path_factory.mktemp("t2i")
    (base / "prompts.txt").write_text("a photo of a bag\n\n  a small dark sneaker \n")
    return (base, *text_to_image_runs)


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
