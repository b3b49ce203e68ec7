"""Test set-up: 8 simulated CPU devices (set before jax is imported) and a per-session TFDS data_dir."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A fresh TFDS data_dir shared by the tests of one session (nothing is written to ~)."""
    return str(tmp_path_factory.mktemp("tfds"))
