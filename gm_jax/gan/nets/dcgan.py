"""DCGAN generator and discriminator (Radford et al. 2016), class-conditional through a label embedding and
a projection discriminator, with optional spectral normalisation and a minibatch-stddev channel.

Images are ``[B, H, W, C]`` in ``[-1, 1]``; the generator ends in ``tanh``; the discriminator returns logits
``[B]``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.core.errors import check_choice, require
from gm_jax.gan.nets.norms import DISCRIMINATOR_NORMALIZATIONS, normalize
from gm_jax.gan.penalties import SpectralNorm


def num_halvings(size: int) -> tuple[int, int]:
    """How many stride-2 steps take a DCGAN image side ``size`` down to its base side (4 to 7):
    28 -> (2, 7), 32 -> (3, 4), 64 -> (4, 4)."""
    base, n = size, 0
    while base % 2 == 0 and base > 7:
        base, n = base // 2, n + 1
    require(n >= 1 and 4 <= base <= 7, f"DCGAN image side must be 4..7 times a power of two (28, 32, 64), got {size}")
    return n, base


def _check_labels(label: jax.Array | None, batch: int, num_classes: int, who: str) -> jax.Array:
    require(label is not None, f"{who} is class-conditional (num_classes={num_classes}); pass label [B]")
    require(label.shape == (batch,),
            f"{who}: label shape {tuple(label.shape)} does not match the batch; expected ({batch},)")
    return label


class DCGANGenerator(nn.Module):
    """DCGAN generator (Radford et al. 2016, Fig. 1): project z, then stride-2 transposed convolutions that
    halve the channels, normalisation + ReLU, ``tanh`` output. With ``num_classes > 0`` it is
    class-conditional: a learned label embedding is concatenated to z (Mirza & Osindero 2014)."""

    image_shape: tuple[int, int, int] = (28, 28, 1)
    features: int = 64
    num_classes: int = 0
    embed_dim: int = 32
    normalization: str = "batch"

    @nn.compact
    def __call__(self, z: jax.Array, label: jax.Array | None = None) -> jax.Array:
        height, width, channels = self.image_shape
        require(height == width, f"DCGAN needs square images, got image_shape={self.image_shape}")
        n, base = num_halvings(height)
        if self.num_classes > 0:
            label = _check_labels(label, z.shape[0], self.num_classes, "DCGANGenerator")
            z = jnp.concatenate([z, nn.Embed(self.num_classes, self.embed_dim)(label)], axis=-1)
        width0 = self.features * 2 ** (n - 1)
        h = nn.Dense(base * base * width0)(z)
        h = nn.relu(normalize(self.normalization, h))
        h = h.reshape(z.shape[0], base, base, width0)
        for i in range(n - 1):
            h = nn.ConvTranspose(width0 // 2 ** (i + 1), (4, 4), strides=(2, 2))(h)
            h = nn.relu(normalize(self.normalization, h))
        return jnp.tanh(nn.ConvTranspose(channels, (4, 4), strides=(2, 2))(h))


def minibatch_stddev(h: jax.Array, epsilon: float = 1e-8) -> jax.Array:
    """Minibatch standard deviation layer (Karras et al. 2018, Sec. 3): the standard deviation over the batch
    of every feature, averaged to one scalar, appended to ``h [B, H, W, C]`` as a constant channel
    ``[B, H, W, C + 1]``; a batch of near-identical samples gets a small value, so the discriminator can
    penalise missing variation (a remedy for mode collapse)."""
    std = jnp.sqrt(jnp.var(h, axis=0) + epsilon)
    channel = jnp.broadcast_to(jnp.mean(std), h.shape[:-1] + (1,))
    return jnp.concatenate([h, channel.astype(h.dtype)], axis=-1)


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator (Radford et al. 2016): stride-2 convolutions doubling the channels, LeakyReLU(0.2),
    no normalisation on the first layer, a linear logit ``psi(phi(x))``. With ``num_classes > 0`` it is a
    projection discriminator (Miyato & Koyama 2018, eq. 3): ``f(x, y) = psi(phi(x)) + <V e_y, phi(x)>``.

    ``normalization='spectral'`` (Miyato et al. 2018) wraps every convolution and the logit layer in
    :class:`gm_jax.gan.penalties.SpectralNorm` instead of normalising activations; its power-iteration
    vectors live in the mutable collection ``"spectral"`` and are refreshed by calls with
    ``update_stats=True`` (apply with ``mutable=["spectral"]``). ``minibatch_std`` appends the
    :func:`minibatch_stddev` feature map before the logit layer (the batch's examples then interact)."""

    features: int = 64
    num_classes: int = 0
    normalization: str = "batch"
    spectral_iters: int = 1
    minibatch_std: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, label: jax.Array | None = None, update_stats: bool = False) -> jax.Array:
        require(x.ndim == 4, f"DCGANDiscriminator expects images [B, H, W, C], got shape {tuple(x.shape)}")
        check_choice("discriminator normalization", self.normalization, DISCRIMINATOR_NORMALIZATIONS)
        spectral = self.normalization == "spectral"

        def layer(module: nn.Module, h: jax.Array) -> jax.Array:
            if not spectral:
                return module(h)
            return SpectralNorm(module, num_iters=self.spectral_iters)(h, update_stats=update_stats)

        n, _ = num_halvings(x.shape[1])
        h = nn.leaky_relu(layer(nn.Conv(self.features, (4, 4), strides=(2, 2)), x), 0.2)
        for i in range(1, n):
            h = layer(nn.Conv(self.features * 2 ** i, (4, 4), strides=(2, 2)), h)
            h = nn.leaky_relu(h if spectral else normalize(self.normalization, h), 0.2)
        if self.minibatch_std:
            h = minibatch_stddev(h)
        phi = h.reshape(x.shape[0], -1)
        logits = layer(nn.Dense(1), phi)[:, 0]
        if self.num_classes > 0:
            label = _check_labels(label, x.shape[0], self.num_classes, "DCGANDiscriminator")
            embed = nn.Embed(self.num_classes, phi.shape[-1], embedding_init=nn.initializers.normal(0.02))
            logits = logits + jnp.sum(embed(label) * phi, axis=-1)
        return logits
