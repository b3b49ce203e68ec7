"""Data parallelism with a ``jax.sharding`` mesh: the batch is split over the ``data`` axis, the train state
is replicated. Works unchanged on one CPU, 8 simulated CPU devices, a GPU/TPU host, and several hosts
(after ``jax.distributed.initialize()``, each process feeds its slice of the global batch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gm_jax.core.errors import ConfigError

DATA_AXIS = "data"


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D mesh over all (global) devices, axis name ``data``."""
    devs = np.asarray(devices if devices is not None else jax.devices())
    return Mesh(devs, (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding of an array held whole on every device."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, leading_axes: int = 0) -> NamedSharding:
    """Sharding that splits the batch axis (after ``leading_axes`` unsplit axes, e.g. the k of fused steps)."""
    return NamedSharding(mesh, PartitionSpec(*([None] * leading_axes), DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, field: str = "data.batch_size") -> None:
    """The global batch (config field ``field``) must split evenly over the devices."""
    n = mesh.devices.size
    if batch_size % n:
        lo, hi = (batch_size // n) * n, (batch_size // n + 1) * n
        raise ConfigError(f"{field}={batch_size} does not divide over {n} devices; "
                          f"use a multiple of {n} such as {hi}" + (f" or {lo}" if lo else ""))


def to_global(local_batch: Mapping[str, np.ndarray], mesh: Mesh, leading_axes: int = 0) -> dict[str, Any]:
    """Assemble this process's slice of the batch into global arrays sharded over the mesh."""
    sharding = batch_sharding(mesh, leading_axes)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}
