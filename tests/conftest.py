"""Test set-up: 8 simulated CPU devices (set before jax is imported) and a per-session TFDS data_dir."""

import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

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
