"""A pre-LayerNorm text transformer (Vaswani et al. 2017; pre-LN placement of Xiong et al. 2020, as in the
CLIP text encoder of Radford et al. 2021 and GPT-2) over padded token sequences, and the masked multi-head
attention it shares with cross-attention.

Padding convention: ``mask`` is a bool ``[B, L]`` array, True for a real token and False for padding.
Padding keys receive no attention weight, so appending padding tokens changes no real token's features and
no pooled feature.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.core.errors import require

MASKED_LOGIT = -1e30  # the logit of a masked key: exp(MASKED_LOGIT - max) is exactly 0 in float32


def multi_head_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """softmax(Q Kᵀ / √d) V per head (Vaswani et al. 2017, eq. 1) with a key padding mask.

    q: [B, Lq, H, d]; k, v: [B, Lk, H, d]; mask: bool [B, Lk] (True = attend) or None. The logits and the
    softmax are computed in float32; masked logits are set to a large negative, and the weights are then
    multiplied by the mask so that a query whose keys are all masked gets all-zero weights and a zero
    output instead of NaN or an average of padding. Returns [B, Lq, H, d] in ``v``'s dtype."""
    scale = 1.0 / jnp.sqrt(jnp.asarray(q.shape[-1], jnp.float32))
    logits = jnp.einsum("bqhd,bkhd->bhqk", q.astype(jnp.float32), k.astype(jnp.float32)) * scale
    if mask is not None:
        keep = jnp.asarray(mask, bool)[:, None, None, :]
        logits = jnp.where(keep, logits, MASKED_LOGIT)
        weights = jax.nn.softmax(logits, axis=-1) * keep
    else:
        weights = jax.nn.softmax(logits, axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", weights.astype(v.dtype), v)


def split_heads(x: jax.Array, num_heads: int) -> jax.Array:
    """[B, L, D] → [B, L, H, D/H]; D must be divisible by H."""
    require(x.shape[-1] % num_heads == 0,
            f"attention width {x.shape[-1]} is not divisible by num_heads {num_heads}; change either")
    return x.reshape(x.shape[:-1] + (num_heads, x.shape[-1] // num_heads))


def masked_mean(x: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Σ_l m_l x_l / max(Σ_l m_l, 1) over axis 1 of ``x`` [B, L, D] (the plain mean when ``mask`` is None);
    a sequence with no real token pools to 0."""
    if mask is None:
        return jnp.mean(x, axis=1)
    m = jnp.asarray(mask, x.dtype)[..., None]
    return jnp.sum(x * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)


class MultiHeadSelfAttention(nn.Module):
    """W_o · MHA(W_q x, W_k x, W_v x; mask) over a token sequence x [B, L, D] (Vaswani et al. 2017, Sec.
    3.2.2), through :func:`multi_head_attention`. ``dtype``: computation dtype (the softmax is float32)."""

    num_heads: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        width = x.shape[-1]
        q, k, v = (split_heads(nn.Dense(width, dtype=self.dtype, name=n)(x), self.num_heads) for n in "qkv")
        out = multi_head_attention(q, k, v, mask).reshape(x.shape[:-1] + (width,))
        return nn.Dense(width, dtype=self.dtype, name="out")(out)


class TransformerBlock(nn.Module):
    """Pre-LN block (Xiong et al. 2020): x ← x + MHSA(LN(x); mask); x ← x + W₂ GELU(W₁ LN(x)), hidden width
    ``mlp_ratio · D`` (Hendrycks & Gimpel 2016 for GELU)."""

    num_heads: int = 1
    mlp_ratio: int = 4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        dt, width = self.dtype, x.shape[-1]
        x = x + MultiHeadSelfAttention(self.num_heads, dt, name="attn")(nn.LayerNorm(dtype=dt, name="ln1")(x), mask)
        h = nn.Dense(self.mlp_ratio * width, dtype=dt, name="mlp_in")(nn.LayerNorm(dtype=dt, name="ln2")(x))
        return x + nn.Dense(width, dtype=dt, name="mlp_out")(nn.gelu(h))


class TextTransformer(nn.Module):
    """``(tokens int [B, L], mask bool [B, L] or None) -> (features [B, L, width], pooled [B, width])``.

    Token embedding + learned position embedding (positions 0 … L−1, L ≤ ``max_len``), ``depth`` pre-LN
    :class:`TransformerBlock` s with the key padding mask, a final LayerNorm (the text encoder of Radford
    et al. 2021, Sec. 2.4, without the causal mask). The pooled feature is the mean of the final features
    over the real tokens (:func:`masked_mean`), so it does not depend on where or how much padding follows
    the text; it is 0 for an all-padding sequence. Outputs are float32."""

    vocab_size: int
    max_len: int
    width: int = 64
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: int = 4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tokens: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        length = tokens.shape[1]
        require(length <= self.max_len, f"token sequences of length {length} exceed max_len {self.max_len}; "
                                        "truncate the text or raise max_len")
        dt = self.dtype
        x = nn.Embed(self.vocab_size, self.width, dtype=dt, name="token_embed")(tokens)
        pos = self.param("pos_embed", nn.initializers.normal(0.01), (self.max_len, self.width))
        x = x + pos[None, :length].astype(x.dtype)
        for i in range(self.depth):
            x = TransformerBlock(self.num_heads, self.mlp_ratio, dt, name=f"block{i}")(x, mask)
        x = nn.LayerNorm(dtype=dt, name="ln_final")(x).astype(jnp.float32)
        return x, masked_mean(x, mask)
