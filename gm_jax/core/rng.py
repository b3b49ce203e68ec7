"""PRNG discipline: every key is derived from a seed by ``fold_in``; nothing is hidden or global.

- ``seed_key(seed)`` is the root of a run.
- ``step_key(root, step)`` is the key of one training step (so a resumed run draws the same numbers).
- ``example_keys(key, first_index, num)`` gives one key per example index, so a sample drawn as number
  ``i`` is the same whatever batch it is drawn in.
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp


def seed_key(seed: int) -> jax.Array:
    """The root key of a run (a typed threefry key)."""
    return jax.random.key(seed)


def step_key(root: jax.Array, step: jax.Array | int) -> jax.Array:
    """Key of training step ``step``: ``fold_in(root, step)``."""
    return jax.random.fold_in(root, step)


def purpose_key(root: jax.Array, purpose: str) -> jax.Array:
    """A key for one named use of the run's root key (``"sample"``, ``"eval"``, ``"init"``):
    ``fold_in(root, crc32(purpose))``, stable across processes and versions."""
    return jax.random.fold_in(root, zlib.crc32(purpose.encode()) & 0x7FFFFFFF)


def example_keys(key: jax.Array, first_index: jax.Array | int, num: int) -> jax.Array:
    """``num`` keys ``fold_in(key, first_index + i)``, one per example, independent of batching."""
    idx = jnp.asarray(first_index, jnp.uint32) + jnp.arange(num, dtype=jnp.uint32)
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(idx)


def per_example_normal(key: jax.Array, first_index: jax.Array | int, shape: tuple[int, ...],
                       dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """Standard normal array of ``shape``; row ``i`` depends only on (key, first_index + i)."""
    keys = example_keys(key, first_index, shape[0])
    return jax.vmap(lambda k: jax.random.normal(k, shape[1:], dtype))(keys)
