"""Every registered family runs through the same loop from its experiment config (shrunk to tiny sizes):
the loop never asks which family it runs. Two steps, a checkpoint, an evaluation and samples each."""

import os
from pathlib import Path

import numpy as np
import pytest

from gm_jax.train.config import apply_overrides, load_config_file
from gm_jax.train.families import FAMILIES
from gm_jax.train.logging import read_metrics
from gm_jax.train.loop import train
from gm_jax.train.workdir import open_run

CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"
SMALL_IMAGES = ["--config.data.name=fashion_mnist_small", "--config.data.num_examples=64",
                "--config.data.batch_size=16"]

# config file, overrides that make it tiny; the family is the config's own model.family
CASES = {
    "vae": ("vae.py", SMALL_IMAGES + ["--config.model.channels=(4,8)", "--config.model.eval_iwae_k=2",
                                      "--config.model.iwae_chunk=2"]),
    "gan": ("gan_eight_gaussians.py", ["--config.data.batch_size=16", "--config.model.hidden=8",
                                       "--config.model.n_critic=2"]),
    "dcgan": ("dcgan_fashion_mnist.py", SMALL_IMAGES + ["--config.model.features=4", "--config.model.latent_dim=4",
                                                        "--config.model.conditional=true"]),
    "gmm": ("gmm_two_moons.py", ["--config.data.batch_size=64", "--config.model.num_components=3"]),
    "bernoulli_mixture": ("bernoulli_mixture_mnist.py", SMALL_IMAGES + ["--config.model.num_components=3",
                                                                        "--config.train.eval_batch_size=16"]),
    "rbm": ("rbm_binarized_mnist.py", SMALL_IMAGES + ["--config.model.num_hidden=8", "--config.model.num_chains=8",
                                                      "--config.model.ais_chains=4", "--config.model.ais_betas=10"]),
    "flow": ("realnvp_two_moons.py", ["--config.data.batch_size=16", "--config.model.num_layers=2",
                                      "--config.model.hidden=8"]),
    "pixelcnn": ("pixelcnn_binarized_mnist.py", SMALL_IMAGES + ["--config.model.hidden=4",
                                                                "--config.model.num_layers=2"]),
    # an MLP denoiser: the tiny U-Net's train step alone compiles in ~10 s (U-Net training: diffusion/test_family)
    "diffusion": ("ddpm_fashion_mnist.py", SMALL_IMAGES + [
        "--config.model.network=mlp", "--config.model.mlp_hidden=(16,)", "--config.model.mlp_emb_dim=8",
        "--config.model.sample_steps=3", "--config.model.eval_num_t=2"]),
    "ncsn": ("ncsn_toy.py", ["--config.data.batch_size=16", "--config.model.mlp_hidden=(16,)",
                             "--config.model.sample_steps=3", "--config.model.langevin_steps=2"]),
    "flow_matching": ("flow_matching_moons.py", ["--config.data.batch_size=16", "--config.model.hidden=8",
                                                 "--config.model.num_steps=3", "--config.model.eval_solver=euler"]),
    "vqvae": ("vqvae_fashion_mnist.py", SMALL_IMAGES + ["--config.model.channels=(4,8)",
                                                        "--config.model.num_codes=4", "--config.model.code_dim=2"]),
    "kl_autoencoder": ("kl_autoencoder_fashion_mnist.py", SMALL_IMAGES + ["--config.model.channels=(4,8)",
                                                                          "--config.model.latent_channels=2"]),
    "clip": ("clip_fashion_mnist.py", SMALL_IMAGES + ["--config.data.captions=true", "--config.model.width=8",
                                                      "--config.model.depth=1", "--config.model.num_heads=2",
                                                      "--config.model.embed_dim=8",
                                                      "--config.model.image_channels=(4,)"]),
}
# built on a trained first stage (an upstream run): trained through the loop by tests/test_cli_text_to_image.py
NEEDS_UPSTREAM = {"latent_diffusion"}
LOOP = ["--config.train.num_steps=2", "--config.train.checkpoint_every=1", "--config.train.log_every=1",
        "--config.train.progress=false", "--config.train.num_samples=4", "--config.train.eval_batches=1",
        "--config.train.sample_every=0", "--config.train.eval_every=0"]


def test_every_registered_family_has_a_case():
    families = {load_config_file(str(CONFIGS / f)).model.family for f, _ in CASES.values()}
    assert set(FAMILIES) - {"autoencoder"} - NEEDS_UPSTREAM <= families


@pytest.mark.parametrize("case", sorted(CASES))
def test_family_trains_evaluates_and_samples_through_the_loop(case, tmp_path, data_dir):
    file, overrides = CASES[case]
    config = apply_overrides(load_config_file(str(CONFIGS / file)),
                             overrides + LOOP + [f"--config.data.data_dir={data_dir}"])
    workdir = str(tmp_path / case)
    state = train(config, workdir)
    assert int(state.step) == 2
    records = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    train_records = [r for r in records if not any(k.startswith("eval/") for k in r)]
    assert [r["step"] for r in train_records] == [1, 2]
    assert any("loss" in k for k in train_records[0])
    assert all(np.isfinite(v) for r in train_records for v in r.values())
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["1", "2"]
    family = open_run(config, workdir).family
    evals = [r[k] for r in records for k in r if k.startswith("eval/")]
    assert bool(evals) == (family.evaluate is not None) and np.all(np.isfinite(evals))
    npz = os.path.join(workdir, "samples", "final.npz")
    assert os.path.exists(npz) == (family.sample is not None)
    if family.sample is not None:
        x = np.load(npz)["samples"]
        assert x.shape[0] == 4 and np.all(np.isfinite(x))
