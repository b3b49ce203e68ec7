"""Cross-attention from image tokens to text tokens and the SpatialTransformer block of latent diffusion
(Rombach et al. 2022, Sec. 3.3: ``Attention(Q, K, V)`` with ``Q = W_q φ(z_t)``,
``K = W_k τ(y)``, ``V = W_v τ(y)``).

The context mask is bool ``[B, L]``, True for a real context token. A context whose tokens are all masked
(or ``context=None`` in :class:`SpatialTransformer`) makes every cross-attention output exactly 0, so the
block reduces to self-attention and the feed-forward: a natural null condition for classifier-free
guidance.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.nn.attention import group_count
from gm_jax.nn.transformer import MultiHeadSelfAttention, multi_head_attention, split_heads


class CrossAttention(nn.Module):
    """W_o · MHA(W_q x, W_k c, W_v c; context_mask) for queries x [B, N, C] and context c [B, L, Dc]
    (Rombach et al. 2022, Sec. 3.3, split into heads; Vaswani et al. 2017, Sec. 3.2.2). Returns [B, N, C].
    ``dtype``: computation dtype (the softmax is float32)."""

    num_heads: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array, context_mask: jax.Array | None = None) -> jax.Array:
        width, dt = x.shape[-1], self.dtype
        q = split_heads(nn.Dense(width, dtype=dt, name="q")(x), self.num_heads)
        k = split_heads(nn.Dense(width, dtype=dt, name="k")(context), self.num_heads)
        v = split_heads(nn.Dense(width, dtype=dt, name="v")(context), self.num_heads)
        out = multi_head_attention(q, k, v, context_mask).reshape(x.shape[:-1] + (width,))
        return nn.Dense(width, dtype=dt, name="out")(out)


class GEGLU(nn.Module):
    """Gated feed-forward W₂ (a ⊙ GELU(g)) with [a, g] = W₁ x, hidden width ``mult · C`` (Shazeer 2020,
    "GLU Variants Improve Transformer"; the feed-forward of the latent-diffusion transformer block)."""

    mult: int = 4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        a, g = jnp.split(nn.Dense(2 * self.mult * x.shape[-1], dtype=self.dtype, name="proj_in")(x), 2, axis=-1)
        return nn.Dense(x.shape[-1], dtype=self.dtype, name="proj_out")(a * nn.gelu(g))


class SpatialTransformer(nn.Module):
    """x + proj_out(blocks(proj_in(GN(x)))) on a feature map x [B, H, W, C] with context [B, L, Dc]
    (Rombach et al. 2022, Sec. 3.3 and the appendix's network details): GroupNorm, 1×1 projection in, then per block
    h ← h + SelfAttn(LN(h)); h ← h + CrossAttn(LN(h), context, context_mask); h ← h + GEGLU(LN(h)) over the
    H·W tokens, and a zero-initialized 1×1 projection out, so the block starts as the identity.

    ``context=None`` is the null condition: cross-attention then outputs 0 (see module docstring).
    ``context_dim`` is only needed for that case (the width of the zero stand-in context)."""

    num_heads: int = 1
    depth: int = 1
    ff_mult: int = 4
    context_dim: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array | None = None,
                 context_mask: jax.Array | None = None) -> jax.Array:
        b, hh, ww, c = x.shape
        dt = self.dtype
        if context is None:
            context = jnp.zeros((b, 1, self.context_dim), dt)
            context_mask = jnp.zeros((b, 1), bool)
        h = nn.GroupNorm(num_groups=group_count(c), epsilon=1e-6, dtype=dt, name="norm")(x)
        h = nn.Dense(c, dtype=dt, name="proj_in")(h).reshape(b, hh * ww, c)
        for i in range(self.depth):
            h = h + MultiHeadSelfAttention(self.num_heads, dt, name=f"self_attn{i}")(
                nn.LayerNorm(dtype=dt, name=f"ln_self{i}")(h))
            h = h + CrossAttention(self.num_heads, dt, name=f"cross_attn{i}")(
                nn.LayerNorm(dtype=dt, name=f"ln_cross{i}")(h), context, context_mask)
            h = h + GEGLU(self.ff_mult, dt, name=f"ff{i}")(nn.LayerNorm(dtype=dt, name=f"ln_ff{i}")(h))
        h = nn.Dense(c, dtype=dt, name="proj_out", kernel_init=nn.initializers.zeros)(h)
        return x + h.reshape(b, hh, ww, c)
