"""Strided-convolution encoder and transposed-convolution decoder for small images (8x8, 28x28, 32x32).

Each stride-2 ``SAME`` convolution maps a side of length ``n`` to ``ceil(n / 2)``; for 28x28 that gives
28 → 14 → 7 → 4. The decoder walks the same list of sizes backwards: every stride-2 transposed convolution
doubles the side (4 → 8) and is then cropped to the encoder's size at that level (8 → 7), so any input size
is reproduced exactly without padding the data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


def downsampled_sizes(size: int, num_downsamples: int) -> list[int]:
    """Side lengths after 0, 1, …, ``num_downsamples`` stride-2 ``SAME`` convolutions:
    ``s_0 = size``, ``s_{i+1} = ceil(s_i / 2)``."""
    sizes = [int(size)]
    for _ in range(num_downsamples):
        sizes.append(math.ceil(sizes[-1] / 2))
    return sizes


class ConvEncoder(nn.Module):
    """``[B, H, W, C]`` → ``[B, out_features]``: one 3x3 stride-2 convolution per entry of ``channels``
    (each followed by ``activation``), flatten, then a dense layer (no activation). ``dtype``: computation
    dtype (parameters stay float32; the output is float32)."""

    channels: Sequence[int]
    out_features: int
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, ch in enumerate(self.channels):
            x = self.activation(nn.Conv(ch, (3, 3), strides=(2, 2), padding="SAME", dtype=self.dtype,
                                        name=f"conv_{i}")(x))
        x = x.reshape(x.shape[:-3] + (-1,))
        return nn.Dense(self.out_features, dtype=self.dtype, name="dense_out")(x).astype(jnp.float32)


class ConvDecoder(nn.Module):
    """``[B, d]`` → ``[B, *output_shape]``: dense to the coarsest feature map (side sizes from
    :func:`downsampled_sizes`, ``channels[-1]`` channels), then per level a 3x3 stride-2 transposed
    convolution + ``activation`` cropped to the encoder's size at that level, then a 3x3 convolution to
    ``output_shape[-1]`` channels (no activation). ``channels`` is given in the encoder's order (fine → coarse)
    so that the same tuple configures both halves. ``dtype``: computation dtype (parameters stay float32; the
    output is float32)."""

    channels: Sequence[int]
    output_shape: tuple[int, int, int]
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        height, width, out_ch = self.output_shape
        levels = len(self.channels)
        hs, ws = downsampled_sizes(height, levels), downsampled_sizes(width, levels)
        x = nn.Dense(hs[-1] * ws[-1] * self.channels[-1], dtype=self.dtype, name="dense_in")(z)
        x = self.activation(x).reshape(z.shape[:-1] + (hs[-1], ws[-1], self.channels[-1]))
        for j, level in enumerate(range(levels - 1, -1, -1)):
            ch = self.channels[level - 1] if level > 0 else self.channels[0]
            x = nn.ConvTranspose(ch, (3, 3), strides=(2, 2), padding="SAME", dtype=self.dtype,
                                 name=f"deconv_{j}")(x)
            x = self.activation(x[..., : hs[level], : ws[level], :])
        x = nn.Conv(out_ch, (3, 3), padding="SAME", dtype=self.dtype, name="conv_out")(x)
        return jnp.reshape(x, z.shape[:-1] + (height, width, out_ch)).astype(jnp.float32)
