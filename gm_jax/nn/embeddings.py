"""Time (noise-level) embeddings for diffusion networks."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def sinusoidal_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
    """[sin(t ω_i), cos(t ω_i)] with ω_i = max_period^{−i/(dim/2)}, i < dim/2 (Vaswani et al. 2017, Sec. 3.5,
    as used for the timestep by Ho et al. 2020, App. B). ``t``: [B] → [B, dim] (zero-padded if dim is odd)."""
    half = dim // 2
    freqs = jnp.exp(-jnp.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    return jnp.pad(emb, ((0, 0), (0, dim - 2 * half)))


class GaussianFourierEmbedding(nn.Module):
    """[sin(2π W t), cos(2π W t)] with fixed W ~ N(0, scale²) (Tancik et al. 2020; Song et al. 2021, App. C.3
    for continuous t or log σ). W is stored as a parameter but never trained (stop_gradient)."""

    dim: int
    scale: float = 16.0

    @nn.compact
    def __call__(self, t: jax.Array) -> jax.Array:
        w = self.param("W", nn.initializers.normal(self.scale), (self.dim // 2,))
        args = 2.0 * jnp.pi * jnp.asarray(t, jnp.float32)[:, None] * jax.lax.stop_gradient(w)[None]
        return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
