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


def pytest_sessionfinish(session, exitstatus):
    """The controller (or a plain run) removes the run's compilation cache."""
    if not hasattr(session.config, "workerinput"):
        import shutil

        shutil.rmtree(_CACHE, ignore_errors=True)
