"""VQ-VAE networks (van den Oord et al. 2017, sec. 4.1): a strided conv encoder to a grid of ``code_dim``
vectors, and a transposed-conv decoder from the quantized grid back to the image.

The encoder has ``len(channels)`` stride-2 4×4 convolutions (ReLU), a 3×3 convolution and a residual block,
then a 1×1 convolution to ``code_dim``; an ``H × W`` image becomes an ``H/2^n × W/2^n`` grid. The decoder
mirrors it with 4×4 stride-2 transposed convolutions. The codebook is not part of the networks: it is an
argument (trained by gradient in ``params`` or by EMA in ``state.extra``).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from gm_jax.vq.quantizer import quantize


class ResidualBlock(nn.Module):
    """``x + conv1x1(relu(conv3x3(relu(x))))`` (van den Oord et al. 2017, sec. 4.1)."""

    hidden: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.Conv(self.hidden, (3, 3), padding="SAME")(nn.relu(x))
        return x + nn.Conv(x.shape[-1], (1, 1))(nn.relu(y))


class VQEncoder(nn.Module):
    """``[B, H, W, C]`` → ``[B, H/2^n, W/2^n, code_dim]`` with ``n = len(channels)``."""

    channels: Sequence[int]
    code_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, ch in enumerate(self.channels):
            x = nn.relu(nn.Conv(ch, (4, 4), strides=(2, 2), padding="SAME", name=f"down_{i}")(x))
        x = nn.Conv(self.channels[-1], (3, 3), padding="SAME")(x)
        x = nn.relu(ResidualBlock(self.channels[-1])(x))
        return nn.Conv(self.code_dim, (1, 1), name="to_code")(x)


class VQDecoder(nn.Module):
    """``[B, h, w, code_dim]`` → ``[B, h·2^n, w·2^n, out_channels]`` (mirror of :class:`VQEncoder`)."""

    channels: Sequence[int]
    out_channels: int

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        x = nn.Conv(self.channels[-1], (3, 3), padding="SAME")(z)
        x = nn.relu(ResidualBlock(self.channels[-1])(x))
        for i, ch in enumerate(reversed(self.channels)):
            x = nn.relu(nn.ConvTranspose(ch, (4, 4), strides=(2, 2), padding="SAME", name=f"up_{i}")(x))
        return nn.Conv(self.out_channels, (3, 3), padding="SAME", name="to_image")(x)


class VQVAE(nn.Module):
    """Encoder → nearest-code quantizer (straight-through) → decoder (van den Oord et al. 2017, fig. 1).

    ``__call__(x, codebook)`` returns ``(x_hat, z_e, e_k, k)``: the reconstruction, encoder outputs, selected
    codes and code indices."""

    channels: Sequence[int]
    code_dim: int
    out_channels: int

    def setup(self) -> None:
        self.encoder = VQEncoder(self.channels, self.code_dim)
        self.decoder = VQDecoder(self.channels, self.out_channels)

    def __call__(self, x: jax.Array, codebook: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        z_e = self.encoder(x)
        z_q, e_k, k = quantize(z_e, codebook)
        return self.decoder(z_q), z_e, e_k, k

    def encode(self, x: jax.Array, codebook: jax.Array) -> jax.Array:
        """Code indices ``[B, h, w]`` of images ``x``."""
        return quantize(self.encoder(x), codebook)[2]

    def decode(self, k: jax.Array, codebook: jax.Array) -> jax.Array:
        """Images from code indices ``k [B, h, w]``: decoder(e_k)."""
        return self.decoder(codebook[k])
