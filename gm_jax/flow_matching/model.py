"""Velocity networks ``v_theta(x, t)`` for flow matching."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.nn.embeddings import sinusoidal_embedding


class VelocityMLP(nn.Module):
    """Time-conditioned MLP ``v(x [B, D], t [B]) -> [B, D]``: the input is ``[x, emb(t)]`` with the
    sinusoidal embedding of ``time_scale * t`` (Vaswani et al. 2017, sec. 3.5), then ``num_layers`` SiLU
    layers of width ``hidden`` and a linear output."""

    hidden: int = 128
    num_layers: int = 3
    time_dim: int = 32
    time_scale: float = 1000.0

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x.shape[0],))
        h = jnp.concatenate([x, sinusoidal_embedding(self.time_scale * t, self.time_dim)], axis=-1)
        for _ in range(self.num_layers):
            h = nn.silu(nn.Dense(self.hidden)(h))
        return nn.Dense(x.shape[-1])(h)
