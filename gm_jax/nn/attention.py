"""Self-attention over the spatial positions of a feature map."""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def group_count(channels: int, max_groups: int = 32, min_group_size: int = 4) -> int:
    """GroupNorm groups for ``channels``: the largest divisor of ``channels`` that is ≤ ``max_groups`` and
    leaves ≥ ``min_group_size`` channels per group (Wu & He 2018 use 32 groups on wide nets: unchanged for
    ≥ 128 channels). One channel per group would normalize away any per-channel shift — the timestep and
    class embeddings that the residual block adds before its second GroupNorm."""
    return math.gcd(channels, max(1, min(max_groups, channels // min_group_size)))


class SelfAttention2D(nn.Module):
    """x + W_o softmax(QKᵀ/√c) V over the H·W positions of GroupNorm(x), Q, K, V by 1×1 projections
    (Vaswani et al. 2017, eq. 1; the attention block of Ho et al. 2020, App. B). ``num_heads`` splits the
    channels into heads. ``dtype``: computation dtype (the softmax runs in float32)."""

    num_heads: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        head_dim = c // self.num_heads
        dt = self.dtype
        y = nn.GroupNorm(num_groups=group_count(c), dtype=dt, name="norm")(x).reshape(b, h * w, c)
        qkv = [nn.Dense(c, dtype=dt, name=n)(y).reshape(b, h * w, self.num_heads, head_dim) for n in ("q", "k", "v")]
        logits = jnp.einsum("bqhd,bkhd->bhqk", qkv[0], qkv[1]) / jnp.sqrt(head_dim).astype(qkv[0].dtype)
        attn = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(qkv[2].dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", attn, qkv[2]).reshape(b, h * w, c)
        out = nn.Dense(c, dtype=dt, name="proj_out", kernel_init=nn.initializers.zeros)(out)
        return x + out.reshape(b, h, w, c)
