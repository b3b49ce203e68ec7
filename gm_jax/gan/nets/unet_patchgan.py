"""Pix2Pix networks (Isola et al. 2017): the U-Net generator (also padded to fit any image side) and the
PatchGAN discriminator of ``(condition, image)`` pairs (CycleGAN uses it with an empty condition).

Images are ``[B, H, W, C]`` in ``[-1, 1]``; the generator ends in ``tanh``; the PatchGAN returns logits
``[B, h, w, 1]``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.core.errors import require
from gm_jax.gan.nets.norms import normalize


def concat_condition(condition: jax.Array, image: jax.Array) -> jax.Array:
    """Channel-wise concatenation of a conditioning image and an image (the cGAN input of Isola et al. 2017);
    ConfigError when their batch or spatial shapes differ."""
    require(condition.ndim == 4 and image.ndim == 4 and condition.shape[:3] == image.shape[:3],
            f"condition {tuple(condition.shape)} and image {tuple(image.shape)} must share [B, H, W]; "
            "resize one of them")
    return jnp.concatenate([condition, image], axis=-1)


class UNetGenerator(nn.Module):
    """Pix2Pix U-Net generator (Isola et al. 2017, Sec. 3.2.1 and App. 6.1.1): ``depth`` stride-2 4x4
    convolutions (LeakyReLU 0.2) down, transposed convolutions (ReLU) up, skip connections concatenating
    mirrored layers, ``tanh`` output. Channels ``min(features * 2^i, 8 features)``. The paper's dropout
    noise is left out (the model is deterministic)."""

    out_channels: int = 3
    features: int = 64
    depth: int = 4
    normalization: str = "instance"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = 2 ** self.depth
        require(x.shape[1] % scale == 0 and x.shape[2] % scale == 0,
                f"UNetGenerator with depth={self.depth} needs H and W divisible by {scale}, got {x.shape[1:3]}")
        width = [min(self.features * 2 ** i, 8 * self.features) for i in range(self.depth)]
        skips, h = [], x
        for i in range(self.depth):
            h = nn.Conv(width[i], (4, 4), strides=(2, 2))(h)
            if i > 0:
                h = normalize(self.normalization, h)
            h = nn.leaky_relu(h, 0.2)
            skips.append(h)
        for i in reversed(range(self.depth - 1)):
            h = nn.ConvTranspose(width[i], (4, 4), strides=(2, 2))(h)
            h = nn.relu(normalize(self.normalization, h))
            h = jnp.concatenate([h, skips[i]], axis=-1)
        return jnp.tanh(nn.ConvTranspose(self.out_channels, (4, 4), strides=(2, 2))(h))


class PatchGANDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al. 2017, Sec. 3.2.2): a fully convolutional classifier of the pair
    ``(condition, image)`` giving one logit per overlapping patch, ``[B, H / 2^num_layers, W / 2^num_layers,
    1]``. Stride-2 4x4 convolutions, LeakyReLU(0.2), no normalisation on the first layer."""

    features: int = 64
    num_layers: int = 3
    normalization: str = "instance"

    @nn.compact
    def __call__(self, condition: jax.Array, image: jax.Array) -> jax.Array:
        h = nn.leaky_relu(nn.Conv(self.features, (4, 4), strides=(2, 2))(concat_condition(condition, image)),
                          0.2)
        for i in range(1, self.num_layers):
            h = nn.Conv(self.features * min(2 ** i, 8), (4, 4), strides=(2, 2))(h)
            h = nn.leaky_relu(normalize(self.normalization, h), 0.2)
        h = nn.Conv(self.features * min(2 ** self.num_layers, 8), (4, 4))(h)
        h = nn.leaky_relu(normalize(self.normalization, h), 0.2)
        return nn.Conv(1, (4, 4))(h)


def _pad_to_multiple(x: jax.Array, multiple: int, value: float) -> tuple[jax.Array, tuple[int, int]]:
    """Pad H and W symmetrically with ``value`` up to the next multiple; returns the padding (top, left)."""
    h, w = x.shape[1], x.shape[2]
    ph, pw = (-h) % multiple, (-w) % multiple
    top, left = ph // 2, pw // 2
    padded = jnp.pad(x, ((0, 0), (top, ph - top), (left, pw - left), (0, 0)), constant_values=value)
    return padded, (top, left)


class PaddedUNet(nn.Module):
    """:class:`UNetGenerator` on images padded (with the background value -1) to a multiple
    of ``2^depth`` and cropped back, so 28x28 images can use a depth-3 U-Net."""

    out_channels: int
    features: int
    depth: int
    normalization: str

    @nn.compact
    def __call__(self, condition: jax.Array) -> jax.Array:
        h, w = condition.shape[1:3]
        padded, (top, left) = _pad_to_multiple(condition, 2 ** self.depth, -1.0)
        out = UNetGenerator(self.out_channels, self.features, self.depth, self.normalization,
                            name="unet")(padded)
        return out[:, top:top + h, left:left + w]
