"""The DDPM U-Net (Ho et al. 2020, App. B; the PixelCNN++-style backbone of Salimans et al. 2017) with a
timestep embedding, residual blocks, self-attention at chosen resolutions, optional class embedding (index
``num_classes`` is the null class of classifier-free guidance) and dropout; with ``context_dim > 0`` the
attention layers become cross-attending SpatialTransformers (text conditioning of latent diffusion, Rombach
et al. 2022). ``unet_config`` gives named sizes from a test-sized net to the 35.7M-parameter CIFAR-10 model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.core.errors import check_choice, require
from gm_jax.nn.attention import SelfAttention2D, group_count
from gm_jax.nn.cross_attention import SpatialTransformer
from gm_jax.nn.embeddings import sinusoidal_embedding
from gm_jax.nn.im2col import Conv


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
        h = Conv(self.out_ch, (3, 3), dtype=dt, name="conv1")(h)
        h = h + nn.Dense(self.out_ch, dtype=dt, name="temb_proj")(nn.swish(temb))[:, None, None, :]
        h = nn.swish(nn.GroupNorm(num_groups=group_count(self.out_ch), dtype=dt, name="norm2")(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = Conv(self.out_ch, (3, 3), dtype=dt, name="conv2", kernel_init=nn.initializers.zeros)(h)
        if x.shape[-1] != self.out_ch:
            x = nn.Dense(self.out_ch, dtype=dt, name="skip")(x)
        return x + h


def attention_block(net: UNet, h: jax.Array, name: str, context: jax.Array | None,
                    context_mask: jax.Array | None) -> jax.Array:
    """The attention layer of a U-Net level: :class:`SelfAttention2D` (Ho et al. 2020) when
    ``net.context_dim == 0``, else a :class:`SpatialTransformer` attending to ``context`` (Rombach et al.
    2022, Sec. 3.3). Called inside ``UNet.__call__``, so the layer is a submodule named ``name``."""
    if net.context_dim == 0:
        return SelfAttention2D(net.num_heads, net.dtype, name=name)(h)
    block = SpatialTransformer(net.num_heads, net.transformer_depth, context_dim=net.context_dim,
                               dtype=net.dtype, name=name)
    return block(h, context, context_mask)


def check_context(context_dim: int, context: jax.Array | None, context_mask: jax.Array | None) -> None:
    """Host-side shape checks of the text conditioning of :class:`UNet` (one-line ConfigErrors)."""
    if context is None:
        require(context_mask is None, "context_mask was given without context; pass both or neither")
        return
    require(context_dim > 0, "this UNet has context_dim 0 and takes no context; set context_dim to the "
                             "width of the context features")
    require(context.ndim == 3 and context.shape[-1] == context_dim,
            f"context must be [B, L, {context_dim}] (context_dim), got shape {tuple(context.shape)}")
    require(context_mask is None or tuple(context_mask.shape) == tuple(context.shape[:2]),
            f"context_mask must be [B, L] = {tuple(context.shape[:2])}, got {getattr(context_mask, 'shape', None)}")


def upsample_to(h: jax.Array, skip: jax.Array) -> jax.Array:
    """Nearest-neighbour 2× upsampling cropped to the spatial size of the skip connection it is
    concatenated with. A stride-2 ``SAME`` convolution maps a side n to ceil(n/2) with output i centred on
    input 2i, so 2× upsampling then cropping re-aligns odd sides (7 → 4 → 8 → 7); for even sides the crop
    keeps every row and column, i.e. it is exactly the plain 2× upsampling of Ho et al. 2020."""
    bsz, hh, ww, c = h.shape
    h = jax.image.resize(h, (bsz, 2 * hh, 2 * ww, c), "nearest")
    return h[:, : skip.shape[1], : skip.shape[2]]


class UNet(nn.Module):
    """ε/x₀/v-network ``(x [B,H,W,C], t [B], label [B] or None, train, *, context, context_mask) ->
    [B,H,W,out_channels]``.

    ch: base width; ch_mult: width multipliers per resolution; num_res_blocks per resolution;
    attn_resolutions: feature-map sizes (heights) with attention; num_classes > 0 adds a class embedding
    with ``num_classes + 1`` rows (the last is the null label, also used when ``label`` is None).
    dtype: computation dtype of every layer (e.g. ``jnp.bfloat16``; mixed precision in the sense of
    Micikevicius et al. 2018: parameters stay float32, the output is cast back to float32).

    Text conditioning (latent diffusion, Rombach et al. 2022, Sec. 3.3): with ``context_dim > 0`` every
    attention layer (the ``attn_resolutions`` and the middle block) is a :class:`SpatialTransformer` of
    ``transformer_depth`` blocks attending to ``context`` [B, L, context_dim] with ``context_mask`` bool
    [B, L] (True = real token); ``context=None`` is the null condition (cross-attention outputs 0). With
    ``context_dim == 0`` (the default) the network and its parameters are those of Ho et al. 2020.
    Odd sides (e.g. 7×7 latents: 7 → 4 → 7) are handled by :func:`upsample_to`.
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
    context_dim: int = 0
    transformer_depth: int = 1

    def time_embedding(self, t: jax.Array, label: jax.Array | None, batch: int) -> jax.Array:
        """Dense(swish(Dense(sinusoid(t)))) (+ the class embedding), width 4·ch (Ho et al. 2020, App. B)."""
        dt, temb_dim = self.dtype, 4 * self.ch
        temb = nn.Dense(temb_dim, dtype=dt, name="temb_dense0")(sinusoidal_embedding(t, self.ch))
        temb = nn.Dense(temb_dim, dtype=dt, name="temb_dense1")(nn.swish(temb))
        if self.num_classes > 0:
            if label is None:
                label = jnp.full((batch,), self.num_classes, jnp.int32)
            temb = temb + nn.Embed(self.num_classes + 1, temb_dim, dtype=dt, name="class_embed")(label)
        return temb

    @nn.compact
    def __call__(self, x: jax.Array, t: jax.Array, label: jax.Array | None = None, train: bool = False, *,
                 context: jax.Array | None = None, context_mask: jax.Array | None = None) -> jax.Array:
        check_context(self.context_dim, context, context_mask)
        dt = self.dtype
        temb = self.time_embedding(t, label, x.shape[0])
        attend = lambda h, name: attention_block(self, h, name, context, context_mask)
        hs = [Conv(self.ch, (3, 3), dtype=dt, name="conv_in")(x)]
        h = hs[-1]
        for level, mult in enumerate(self.ch_mult):
            for b in range(self.num_res_blocks):
                h = ResidualBlock(self.ch * mult, self.dropout, dt, name=f"down{level}_res{b}")(h, temb, train)
                if h.shape[1] in self.attn_resolutions:
                    h = attend(h, f"down{level}_attn{b}")
                hs.append(h)
            if level != len(self.ch_mult) - 1:
                h = nn.Conv(h.shape[-1], (3, 3), strides=(2, 2), dtype=dt, name=f"down{level}_downsample")(h)
                hs.append(h)
        h = ResidualBlock(h.shape[-1], self.dropout, dt, name="mid_res0")(h, temb, train)
        h = attend(h, "mid_attn")
        h = ResidualBlock(h.shape[-1], self.dropout, dt, name="mid_res1")(h, temb, train)
        for level in reversed(range(len(self.ch_mult))):
            for b in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, hs.pop()], axis=-1)
                h = ResidualBlock(self.ch * self.ch_mult[level], self.dropout, dt, name=f"up{level}_res{b}")(
                    h, temb, train)
                if h.shape[1] in self.attn_resolutions:
                    h = attend(h, f"up{level}_attn{b}")
            if level != 0:
                h = Conv(h.shape[-1], (3, 3), dtype=dt, name=f"up{level}_upsample")(upsample_to(h, hs[-1]))
        h = nn.swish(nn.GroupNorm(num_groups=group_count(h.shape[-1]), dtype=dt, name="norm_out")(h))
        out_ch = self.out_channels or x.shape[-1]
        out = Conv(out_ch, (3, 3), dtype=dt, name="conv_out", kernel_init=nn.initializers.zeros)(h)
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
