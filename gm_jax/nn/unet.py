"""The DDPM U-Net (Ho et al. 2020, App. B; the PixelCNN++-style backbone of Salimans et al. 2017) with a
timestep embedding, residual blocks, self-attention at chosen resolutions, optional class embedding (index
``num_classes`` is the null class of classifier-free guidance) and dropout. ``unet_config`` gives named
sizes from a test-sized net to the 35.7M-parameter CIFAR-10 model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.core.errors import check_choice
from gm_jax.nn.attention import SelfAttention2D, group_count
from gm_jax.nn.embeddings import sinusoidal_embedding


class ResidualBlock(nn.Module):
    """h = Conv(Dropout(swish(GN(Conv(swish(GN(x))) + Dense(swish(temb)))))) ; out = skip(x) + h, skip a 1×1
    projection when the width changes (Ho et al. 2020, App. B; He et al. 2016). ``dtype``: computation dtype
    (parameters stay float32)."""

    out_ch: int
    dropout: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array, train: bool = False) -> jax.Array:
        dt = self.dtype
        h = nn.swish(nn.GroupNorm(num_groups=group_count(x.shape[-1]), dtype=dt, name="norm1")(x))
        h = nn.Conv(self.out_ch, (3, 3), dtype=dt, name="conv1")(h)
        h = h + nn.Dense(self.out_ch, dtype=dt, name="temb_proj")(nn.swish(temb))[:, None, None, :]
        h = nn.swish(nn.GroupNorm(num_groups=group_count(self.out_ch), dtype=dt, name="norm2")(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = nn.Conv(self.out_ch, (3, 3), dtype=dt, name="conv2", kernel_init=nn.initializers.zeros)(h)
        if x.shape[-1] != self.out_ch:
            x = nn.Dense(self.out_ch, dtype=dt, name="skip")(x)
        return x + h


class UNet(nn.Module):
    """ε/x₀/v-network ``(x [B,H,W,C], t [B], label [B] or None, train) -> [B,H,W,out_channels]``.

    ch: base width; ch_mult: width multipliers per resolution; num_res_blocks per resolution;
    attn_resolutions: feature-map sizes with self-attention; num_classes > 0 adds a class embedding with
    ``num_classes + 1`` rows (the last is the null label, also used when ``label`` is None).
    dtype: computation dtype of every layer (e.g. ``jnp.bfloat16``; mixed precision in the sense of
    Micikevicius et al. 2018: parameters stay float32, the output is cast back to float32).
    """

    ch: int = 128
    ch_mult: Sequence[int] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: Sequence[int] = (16,)
    dropout: float = 0.1
    num_classes: int = 0
    out_channels: int | None = None
    num_heads: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, label: jax.Array | None = None,
                 train: bool = False) -> jax.Array:
        dt = self.dtype
        temb_dim = 4 * self.ch
        temb = sinusoidal_embedding(t, self.ch)
        temb = nn.Dense(temb_dim, dtype=dt, name="temb_dense0")(temb)
        temb = nn.Dense(temb_dim, dtype=dt, name="temb_dense1")(nn.swish(temb))
        if self.num_classes > 0:
            if label is None:
                label = jnp.full((x.shape[0],), self.num_classes, jnp.int32)
            temb = temb + nn.Embed(self.num_classes + 1, temb_dim, dtype=dt, name="class_embed")(label)
        res = x.shape[1]
        hs = [nn.Conv(self.ch, (3, 3), dtype=dt, name="conv_in")(x)]
        h = hs[-1]
        for level, mult in enumerate(self.ch_mult):
            for b in range(self.num_res_blocks):
                h = ResidualBlock(self.ch * mult, self.dropout, dt, name=f"down{level}_res{b}")(h, temb, train)
                if res in self.attn_resolutions:
                    h = SelfAttention2D(self.num_heads, dt, name=f"down{level}_attn{b}")(h)
                hs.append(h)
            if level != len(self.ch_mult) - 1:
                h = nn.Conv(h.shape[-1], (3, 3), strides=(2, 2), dtype=dt, name=f"down{level}_downsample")(h)
                res //= 2
                hs.append(h)
        h = ResidualBlock(h.shape[-1], self.dropout, dt, name="mid_res0")(h, temb, train)
        h = SelfAttention2D(self.num_heads, dt, name="mid_attn")(h)
        h = ResidualBlock(h.shape[-1], self.dropout, dt, name="mid_res1")(h, temb, train)
        for level in reversed(range(len(self.ch_mult))):
            for b in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, hs.pop()], axis=-1)
                h = ResidualBlock(self.ch * self.ch_mult[level], self.dropout, dt, name=f"up{level}_res{b}")(
                    h, temb, train)
                if res in self.attn_resolutions:
                    h = SelfAttention2D(self.num_heads, dt, name=f"up{level}_attn{b}")(h)
            if level != 0:
                bsz, hh, ww, c = h.shape
                h = jax.image.resize(h, (bsz, 2 * hh, 2 * ww, c), "nearest")
                h = nn.Conv(c, (3, 3), dtype=dt, name=f"up{level}_upsample")(h)
                res *= 2
        h = nn.swish(nn.GroupNorm(num_groups=group_count(h.shape[-1]), dtype=dt, name="norm_out")(h))
        out_ch = self.out_channels or x.shape[-1]
        out = nn.Conv(out_ch, (3, 3), dtype=dt, name="conv_out", kernel_init=nn.initializers.zeros)(h)
        return out.astype(jnp.float32)


UNET_CONFIGS: dict[str, dict] = {
    # Ho et al. 2020, App. B: CIFAR-10 model, 35.7M parameters.
    "ddpm_cifar10": dict(ch=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attn_resolutions=(16,), dropout=0.1),
    # A ~1M-parameter net for 28×28 / 32×32 experiments on CPU.
    "small": dict(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,), dropout=0.1),
    # Test size: seconds to compile, milliseconds to run.
    "tiny": dict(ch=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), dropout=0.0),
}


def unet_config(name: str, **overrides: object) -> dict:
    """Keyword arguments of :class:`UNet` for a named size ('ddpm_cifar10', 'small', 'tiny'), with
    overrides (e.g. ``num_classes=10``)."""
    check_choice("unet config", name, UNET_CONFIGS)
    return {**UNET_CONFIGS[name], **overrides}
