"""Test set-up: 8 simulated CPU devices (set before jax is imported) and a per-session TFDS data_dir."""

import os
import tempfile

# 8 simulated CPU devices; XLA's backend optimization level 0: the suite's time is mostly compilation, which
# this cuts by about a third (tests/diffusion/test_inverse.py, tests/metrics and tests/flows/test_bijectors.py
# together: 351 -> 231 CPU-s with the threefry setting below, measured on the 2-core reference machine)
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# JAX's non-partitionable threefry counters: XLA:CPU compiles a program that draws random numbers ~3x faster
# (jax.random.normal of a [4, 4, 16, 8] array: 0.8 s against 2-3 s; the VQ-VAE's init 9 s against 31 s,
# measured on the 2-core reference machine). The streams differ from JAX's default, nothing else does: every
# test compares runs of one mode with each other or with statistics. JAX_THREEFRY_PARTITIONABLE=1 runs the
# suite in JAX's default mode.
os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")

# One persistent compilation cache per test run, shared by the xdist workers: programs that several tests
# compile alike (the same tiny model trained by the CLI and by the loop tests) compile once. A fresh folder
# each run, so the suite's time is the cold time CI sees.
_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
_CACHE = os.path.join(tempfile.gettempdir(), f"gm_jax_test_cache_{_RUN}")
os.environ["GM_JAX_COMPILATION_CACHE"] = _CACHE  # also for the CLI commands the tests run

import pytest  # noqa: E402

from gm_jax.train.compile_cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A fresh TFDS data_dir shared by the tests of one session (nothing is written to ~)."""
    return str(tmp_path_factory.mktemp("tfds"))


def tiny_run_flags(data_dir):
    """Overrides of a 2-step run on 64 embedded Fashion-MNIST images, batch 16, final samples only."""
    return [f"--config.data.data_dir={data_dir}", "--config.data.name=fashion_mnist_small",
            "--config.data.num_examples=64", "--config.data.batch_size=16", "--config.train.num_steps=2",
            "--config.train.checkpoint_every=2", "--config.train.log_every=1", "--config.train.progress=false",
            "--config.train.num_samples=4", "--config.train.eval_batches=1", "--config.train.sample_every=0",
            "--config.train.eval_every=0"]


@pytest.fixture(scope="session")
def text_to_image_runs(tmp_path_factory, data_dir):
    """``(kl_autoencoder workdir, latent_diffusion workdir)``: a tiny first stage and a tiny text-conditioned
    latent diffusion run on its latents (captioned embedded Fashion-MNIST), 2 steps each; tests only read them."""
    from pathlib import Path

    from gm_jax.cli import main

    configs = Path(__file__).resolve().parents[1] / "experiments" / "configs"
    base = tmp_path_factory.mktemp("text_to_image_runs")
    ae, ldm = str(base / "ae"), str(base / "ldm")
    assert main(["train", str(configs / "kl_autoencoder_fashion_mnist.py"), "--workdir", ae, *tiny_run_flags(data_dir),
                 "--config.model.channels=(4,8)", "--config.model.latent_channels=2"]) == 0
    assert main(["train", str(configs / "ldm_text_fashion_mnist.py"), "--workdir", ldm, *tiny_run_flags(data_dir),
                 "--config.data.captions=true", f"--config.model.first_stage={ae}", "--config.model.unet=tiny",
                 "--config.model.attn_resolutions=(7,)", "--config.model.num_heads=2", "--config.model.text_width=8",
                 "--config.model.text_depth=1", "--config.model.text_heads=2", "--config.model.process=discrete",
                 "--config.model.parametrization=eps", "--config.model.num_timesteps=20",
                 "--config.model.max_sample_steps=20", "--config.model.sample_steps=2"]) == 0
    return ae, ldm


def pytest_sessionfinish(session, exitstatus):
    """The controller (or a plain run) removes the run's compilation cache."""
    if not hasattr(session.config, "workerinput"):
        import shutil

        shutil.rmtree(_CACHE, ignore_errors=True)
