"""MLP generator and discriminator for vector (2-D toy) data."""

from __future__ import annotations

import flax.linen as nn
import jax


class MLPGenerator(nn.Module):
    """Small MLP generator for 2-D toy data: ``depth`` ReLU layers of width ``hidden``, linear output."""

    out_dim: int = 2
    hidden: int = 128
    depth: int = 3

    @nn.compact
    def __call__(self, z: jax.Array, label: jax.Array | None = None) -> jax.Array:
        h = z
        for _ in range(self.depth):
            h = nn.relu(nn.Dense(self.hidden)(h))
        return nn.Dense(self.out_dim)(h)


class MLPDiscriminator(nn.Module):
    """Small MLP discriminator for 2-D toy data: ``depth`` LeakyReLU(0.2) layers, one logit per example."""

    hidden: int = 128
    depth: int = 3

    @nn.compact
    def __call__(self, x: jax.Array, label: jax.Array | None = None) -> jax.Array:
        h = x.reshape(x.shape[0], -1)
        for _ in range(self.depth):
            h = nn.leaky_relu(nn.Dense(self.hidden)(h), 0.2)
        return nn.Dense(1)(h)[:, 0]
