"""Normalisation layers shared by the GAN networks (no running statistics are kept).

``"batch"`` normalises with the statistics of the batch being processed (at training and at sampling time,
as in the DCGAN reference code), so no mutable collection is needed; ``"instance"`` and ``"layer"`` are
per example (use them, or ``"none"``, in a critic trained with a gradient penalty).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.core.errors import check_choice

NORMALIZATIONS = ("batch", "instance", "layer", "none")
DISCRIMINATOR_NORMALIZATIONS = NORMALIZATIONS + ("spectral",)


class BatchStatNorm(nn.Module):
    """Batch normalisation (Ioffe & Szegedy 2015, Alg. 1) with the current batch's statistics over all axes
    but the last, and a learned per-channel scale and shift; no running averages are kept."""

    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axis=axes, keepdims=True)
        var = jnp.var(x, axis=axes, keepdims=True)
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],))
        bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],))
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


def normalize(kind: str, x: jax.Array, name: str | None = None) -> jax.Array:
    """Apply the normalisation ``kind`` (one of :data:`NORMALIZATIONS`) inside a compact module."""
    check_choice("normalization", kind, NORMALIZATIONS)
    if kind == "batch":
        return BatchStatNorm(name=name)(x)
    if kind == "instance":
        return nn.InstanceNorm(name=name)(x)
    if kind == "layer":
        return nn.LayerNorm(reduction_axes=tuple(range(1, x.ndim)), feature_axes=-1, name=name)(x)
    return x
