"""Networks of the diffusion family: the U-Net for images (gm_jax.nn.unet) and a small time-conditioned
MLP for vectors (2-D toy data)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.nn.embeddings import sinusoidal_embedding


class TimeConditionedMLP(nn.Module):
    """``(x [B, D], t [B], label [B] or None, train) -> [B, D]``: h_{l+1} = swish(W_l h_l + U_l e(t) + c_l),
    e(t) the sinusoidal embedding (Vaswani et al. 2017) through a 2-layer MLP, plus a class embedding
    (index ``num_classes`` = null label) when ``num_classes > 0``; a final affine layer."""

    hidden: Sequence[int] = (128, 128, 128)
    emb_dim: int = 64
    num_classes: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, label: jax.Array | None = None,
                 train: bool = False) -> jax.Array:
        del train
        emb = sinusoidal_embedding(t, self.emb_dim)
        emb = nn.Dense(self.emb_dim, name="temb1")(nn.swish(nn.Dense(self.emb_dim, name="temb0")(emb)))
        if self.num_classes > 0:
            if label is None:
                label = jnp.full((x.shape[0],), self.num_classes, jnp.int32)
            emb = emb + nn.Embed(self.num_classes + 1, self.emb_dim, name="class_embed")(label)
        h = x.reshape(x.shape[0], -1)
        for i, width in enumerate(self.hidden):
            h = nn.swish(nn.Dense(width, name=f"dense{i}")(h) + nn.Dense(width, name=f"temb_proj{i}")(emb))
        return nn.Dense(x[0].size, name="out")(h).reshape(x.shape)
