"""A miniature CLIP (Radford et al. 2021): a conv image encoder and a :class:`TextTransformer`, each
followed by a linear projection into a shared space of L2-normalized embeddings, a learned temperature,
the symmetric InfoNCE loss, CLIPScore (Hessel et al. 2021) and zero-shot classification logits.

The temperature is stored as ``s = log(1/τ)``, initialized to ``log(1/0.07)``, and used as the logit scale
``exp(min(s, log 100))`` so that the scale never exceeds 100 (Radford et al. 2021, Sec. 2.5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.nn.attention import group_count
from gm_jax.nn.transformer import TextTransformer

INIT_LOGIT_SCALE = math.log(1.0 / 0.07)  # log(1/τ) at τ = 0.07 (Radford et al. 2021, Sec. 2.5)
MAX_LOGIT_SCALE = 100.0


def l2_normalize(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """x / max(‖x‖₂, eps) along the last axis, in float32."""
    x = jnp.asarray(x, jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def clip_loss(image_emb: jax.Array, text_emb: jax.Array, logit_scale: jax.Array | float) -> jax.Array:
    """Symmetric InfoNCE of CLIP (Radford et al. 2021, Fig. 3; van den Oord et al. 2018):
    logits = scale · I Tᵀ for the [N, E] image and text embeddings (pair i matches pair i), and the loss is
    ½ [CE(logits, rows) + CE(logitsᵀ, rows)], each cross-entropy the mean over the N rows of
    −log softmax(logits)_{ii}. The embeddings are used as given (pass L2-normalized ones); scalar float32."""
    logits = jnp.asarray(logit_scale, jnp.float32) * (jnp.asarray(image_emb, jnp.float32)
                                                       @ jnp.asarray(text_emb, jnp.float32).T)
    image_to_text = -jnp.mean(jnp.diagonal(jax.nn.log_softmax(logits, axis=1)))
    text_to_image = -jnp.mean(jnp.diagonal(jax.nn.log_softmax(logits, axis=0)))
    return 0.5 * (image_to_text + text_to_image)


def clip_score(image_emb: jax.Array, text_emb: jax.Array) -> jax.Array:
    """CLIPScore (Hessel et al. 2021, eq. 1) with weight w = 100: the mean over the N matching pairs of
    100 · max(cos(image_i, text_i), 0) (the 100 of common implementations; Hessel et al. use w = 2.5).
    Embeddings [N, E] need not be normalized; scalar float32."""
    cos = jnp.sum(l2_normalize(image_emb) * l2_normalize(text_emb), axis=-1)
    return jnp.mean(100.0 * jnp.maximum(cos, 0.0))


def zero_shot_logits(image_emb: jax.Array, class_text_emb: jax.Array, logit_scale: jax.Array | float) -> jax.Array:
    """Zero-shot classification logits (Radford et al. 2021, Sec. 3.1.2): scale · cos(image_b, class_k)
    for images [B, E] and one text embedding per class [K, E]; returns [B, K] (argmax = predicted class)."""
    return jnp.asarray(logit_scale, jnp.float32) * (l2_normalize(image_emb) @ l2_normalize(class_text_emb).T)


class ConvImageEncoder(nn.Module):
    """[B, H, W, C] → [B, channels[-1]]: per entry of ``channels`` a 3×3 stride-2 convolution, GroupNorm and
    swish, then global mean pooling over the positions (a small stand-in for CLIP's ResNet / ViT)."""

    channels: Sequence[int] = (32, 64)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = jnp.asarray(x, self.dtype)
        for i, ch in enumerate(self.channels):
            h = nn.Conv(ch, (3, 3), strides=(2, 2), dtype=self.dtype, name=f"conv{i}")(h)
            h = nn.swish(nn.GroupNorm(num_groups=group_count(ch), dtype=self.dtype, name=f"norm{i}")(h))
        return jnp.mean(h.astype(jnp.float32), axis=(1, 2))


class MiniCLIP(nn.Module):
    """Contrastive image–text model (Radford et al. 2021).

    ``__call__(images [B,H,W,C], tokens int [B,L], mask bool [B,L] or None) -> (image_emb [B,E],
    text_emb [B,E], logit_scale scalar)``; ``encode_image(images)``, ``encode_text(tokens, mask)`` give the
    L2-normalized embeddings separately (use ``apply(..., method="encode_image")``), ``logit_scale()`` the
    clipped exp(log(1/τ)). The text side pools :class:`TextTransformer` features over the real tokens.
    Projections have no bias, as in CLIP."""

    vocab_size: int
    max_len: int
    embed_dim: int = 64
    width: int = 64
    depth: int = 2
    num_heads: int = 4
    image_channels: Sequence[int] = (32, 64)
    dtype: Any = jnp.float32

    def setup(self) -> None:
        self.image_encoder = ConvImageEncoder(tuple(self.image_channels), self.dtype)
        self.text_encoder = TextTransformer(self.vocab_size, self.max_len, self.width, self.depth,
                                            self.num_heads, dtype=self.dtype)
        self.image_proj = nn.Dense(self.embed_dim, use_bias=False, name="image_proj")
        self.text_proj = nn.Dense(self.embed_dim, use_bias=False, name="text_proj")
        self.log_inv_temperature = self.param("log_inv_temperature", nn.initializers.constant(INIT_LOGIT_SCALE),
                                              ())

    def encode_image(self, images: jax.Array) -> jax.Array:
        """L2-normalized image embeddings [B, embed_dim]."""
        return l2_normalize(self.image_proj(self.image_encoder(images)))

    def encode_text(self, tokens: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """L2-normalized text embeddings [B, embed_dim] of the token-mean of the transformer features."""
        _, pooled = self.text_encoder(tokens, mask)
        return l2_normalize(self.text_proj(pooled))

    def logit_scale(self) -> jax.Array:
        """exp(min(log(1/τ), log 100)): the similarity multiplier, at most 100."""
        return jnp.exp(jnp.minimum(self.log_inv_temperature, math.log(MAX_LOGIT_SCALE)))

    def __call__(self, images: jax.Array, tokens: jax.Array,
                 mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
        return self.encode_image(images), self.encode_text(tokens, mask), self.logit_scale()
