"""Self-attention over the spatial positions of a feature map."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def group_count(channels: int, max_groups: int = 32) -> int:
    """The largest number of GroupNorm groups ≤ ``max_groups`` that divides ``channels``."""
    return math.gcd(channels, max_groups)


class SelfAttention2D(nn.Module):
    """x + W_o softmax(QKᵀ/√c) V over the H·W positions of GroupNorm(x), Q, K, V by 1×1 projections
    (Vaswani et al. 2017, eq. 1; the attention block of Ho et al. 2020, App. B). ``num_heads`` splits the
    channels into heads."""

    num_heads: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        head_dim = c // self.num_heads
        y = nn.GroupNorm(num_groups=group_count(c), name="norm")(x).reshape(b, h * w, c)
        qkv = [nn.Dense(c, name=n)(y).reshape(b, h * w, self.num_heads, head_dim) for n in ("q", "k", "v")]
        logits = jnp.einsum("bqhd,bkhd->bhqk", qkv[0], qkv[1]) / jnp.sqrt(head_dim).astype(x.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), qkv[2]).reshape(b, h * w, c)
        out = nn.Dense(c, name="proj_out", kernel_init=nn.initializers.zeros)(out)
        return x + out.reshape(b, h, w, c)
