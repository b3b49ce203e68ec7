"""The CycleGAN ResNet generator (Zhu et al. 2017; Johnson et al. 2016)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.core.errors import require
from gm_jax.gan.nets.norms import normalize


def _reflect_pad(x: jax.Array, pad: int) -> jax.Array:
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


class CycleGANGenerator(nn.Module):
    """CycleGAN ResNet generator (Zhu et al. 2017, App. 7.2; Johnson et al. 2016): reflection-padded 7x7
    convolution, ``num_downsamples`` stride-2 convolutions, ``num_blocks`` residual blocks, transposed
    convolutions back up, 7x7 convolution with ``tanh``; instance normalisation."""

    out_channels: int = 3
    features: int = 64
    num_downsamples: int = 2
    num_blocks: int = 6
    normalization: str = "instance"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = 2 ** self.num_downsamples
        require(x.shape[1] % scale == 0 and x.shape[2] % scale == 0,
                f"CycleGANGenerator needs H and W divisible by {scale}, got {x.shape[1:3]}")
        h = nn.Conv(self.features, (7, 7), padding="VALID")(_reflect_pad(x, 3))
        h = nn.relu(normalize(self.normalization, h))
        for i in range(self.num_downsamples):
            h = nn.Conv(self.features * 2 ** (i + 1), (3, 3), strides=(2, 2))(h)
            h = nn.relu(normalize(self.normalization, h))
        width = h.shape[-1]
        for _ in range(self.num_blocks):
            r = nn.Conv(width, (3, 3), padding="VALID")(_reflect_pad(h, 1))
            r = nn.relu(normalize(self.normalization, r))
            r = nn.Conv(width, (3, 3), padding="VALID")(_reflect_pad(r, 1))
            h = h + normalize(self.normalization, r)
        for i in reversed(range(self.num_downsamples)):
            h = nn.ConvTranspose(self.features * 2 ** i, (3, 3), strides=(2, 2))(h)
            h = nn.relu(normalize(self.normalization, h))
        return jnp.tanh(nn.Conv(self.out_channels, (7, 7), padding="VALID")(_reflect_pad(h, 3)))
