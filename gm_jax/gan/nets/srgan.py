"""The SRGAN generator (Ledig et al. 2017) and its sub-pixel upsampling (Shi et al. 2016)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.core.errors import require


def pixel_shuffle(x: jax.Array, factor: int) -> jax.Array:
    """Sub-pixel convolution rearrangement (Shi et al. 2016, eq. 4): ``[B, H, W, C r^2] -> [B, H r, W r, C]``
    with output pixel ``(h r + i, w r + j, c)`` read from input channel ``c r^2 + i r + j``."""
    b, h, w, c = x.shape
    require(c % (factor * factor) == 0,
            f"pixel_shuffle needs channels divisible by factor^2={factor * factor}, got {c}")
    out_c = c // (factor * factor)
    x = x.reshape(b, h, w, out_c, factor, factor)
    x = x.transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(b, h * factor, w * factor, out_c)


class SRGANGenerator(nn.Module):
    """SRGAN generator (Ledig et al. 2017, Fig. 4): 9x9 convolution + PReLU, ``num_blocks`` residual blocks,
    a long skip, then ``log2(scale)`` sub-pixel upsampling blocks (convolution to 4C, pixel shuffle x2,
    PReLU) and a 9x9 output convolution with ``tanh``. Batch normalisation in the residual blocks is left
    out (as in ESRGAN, Wang et al. 2018), so the network is per-example. ``scale`` is 2 or 4."""

    scale: int = 4
    out_channels: int = 3
    features: int = 64
    num_blocks: int = 16

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        require(self.scale in (2, 4), f"SRGANGenerator scale must be 2 or 4, got {self.scale}")
        h = nn.PReLU()(nn.Conv(self.features, (9, 9))(x))
        skip = h
        for _ in range(self.num_blocks):
            r = nn.PReLU()(nn.Conv(self.features, (3, 3))(h))
            h = h + nn.Conv(self.features, (3, 3))(r)
        h = skip + nn.Conv(self.features, (3, 3))(h)
        for _ in range(self.scale // 2):
            h = nn.PReLU()(pixel_shuffle(nn.Conv(4 * self.features, (3, 3))(h), 2))
        return jnp.tanh(nn.Conv(self.out_channels, (9, 9))(h))
