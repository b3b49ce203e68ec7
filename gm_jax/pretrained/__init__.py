"""Pretrained models shipped with the package, loadable in one line.

    import gm_jax.pretrained
    gm_jax.pretrained.names()                          # ['vae_fashion_mnist_small', ...]
    family, params = gm_jax.pretrained.load("vae_fashion_mnist_small")
    images, info = family.sample(params, jax.random.key(0), 16)

The weights are flax msgpack files with JSON sidecars in ``gm_jax/pretrained/weights`` (see
:mod:`gm_jax.pretrained.gallery`), verified by sha256 on every load; ``gm-jax pretrained export --workdir DIR
--name NAME`` makes one from a finished run (:mod:`gm_jax.pretrained.export`). This package sits above the
train layer: it builds families through :func:`gm_jax.train.families.build_family` and reads runs through
:mod:`gm_jax.train.workdir`. Importing it (and listing models) imports no JAX; loading does.
"""

from __future__ import annotations

import os
from typing import Any

from gm_jax.pretrained.gallery import WEIGHTS_DIR, ModelRow, format_table, models, names, read_sidecar


def load(name: str, weights_dir: str | os.PathLike | None = None) -> tuple[Any, Any]:
    """``(family, params)`` of the shipped model ``name`` (:func:`gm_jax.pretrained.loading.load`)."""
    from gm_jax.pretrained.loading import load as _load

    return _load(name, weights_dir)


__all__ = ["ModelRow", "WEIGHTS_DIR", "format_table", "load", "models", "names", "read_sidecar"]
