"""Autoencoder and VAE networks (linen), with MLP or convolutional encoder/decoder.

Decoders:

- ``bernoulli``: the decoder outputs logits ℓ and ``p(x|z) = Π Bern(x_i; σ(ℓ_i))``; only for binary data.
- ``gaussian``: the decoder outputs the mean μ and ``p(x|z) = N(x; μ, diag σ²)`` with a variance that does
  not depend on z. ``gaussian_variance='fixed'``: ``log σ² = fixed_logvar`` (a constant, not trained;
  the ELBO is then a weighted squared error). ``'learned'``: one trained log-variance per data dimension,
  shared by all examples and floored softly at ``min_logvar`` (``min + softplus(raw − min)``) so that the
  likelihood cannot diverge on constant pixels (cf. Rybkin et al. 2021, σ-VAE, for a shared learned σ).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.autoencoders import losses
from gm_jax.nn.conv import ConvDecoder, ConvEncoder
from gm_jax.nn.mlp import MLP

ARCHS = ("mlp", "conv")
DECODERS = ("bernoulli", "gaussian")
VARIANCES = ("fixed", "learned")
CODE_ACTIVATIONS = {"none": lambda h: h, "sigmoid": nn.sigmoid, "relu": nn.relu}


def _encoder(arch: str, hidden: Sequence[int], channels: Sequence[int], out: int, dtype: Any = jnp.float32
             ) -> nn.Module:
    if arch == "mlp":
        return MLP(tuple(hidden) + (out,))
    return ConvEncoder(tuple(channels), out, dtype=dtype)


class _Decoder(nn.Module):
    """Latent ``[..., d]`` → decoder output ``[..., *data_shape]`` (logits or mean)."""

    arch: str
    data_shape: tuple[int, ...]
    hidden: Sequence[int]
    channels: Sequence[int]
    dtype: Any = jnp.float32  # computation dtype of the conv decoder (the MLP computes in float32)

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        if self.arch == "mlp":
            size = 1
            for s in self.data_shape:
                size *= s
            out = MLP(tuple(reversed(tuple(self.hidden))) + (size,), name="mlp")(z)
            return out.reshape(z.shape[:-1] + tuple(self.data_shape))
        return ConvDecoder(tuple(self.channels), tuple(self.data_shape), dtype=self.dtype, name="conv")(z)


def _flatten_input(arch: str, x: jax.Array, data_shape: tuple[int, ...]) -> jax.Array:
    return x.reshape(x.shape[: x.ndim - len(data_shape)] + (-1,)) if arch == "mlp" else x


class Autoencoder(nn.Module):
    """Deterministic autoencoder ``x̂ = g(f(x))`` (Hinton & Salakhutdinov 2006). ``encode`` gives the code
    ``h = a(f(x))`` (``code_activation`` a: 'none', 'sigmoid' for the KL sparsity penalty, 'relu');
    ``decode`` gives logits (Bernoulli decoder) or the mean (Gaussian decoder)."""

    data_shape: tuple[int, ...]
    latent_dim: int
    arch: str = "mlp"
    hidden: Sequence[int] = (256,)
    channels: Sequence[int] = (16, 32)
    code_activation: str = "none"
    decoder_dist: str = "bernoulli"
    dtype: Any = jnp.float32  # computation dtype of the conv encoder/decoder (parameters stay float32)

    def setup(self) -> None:
        self.encoder = _encoder(self.arch, self.hidden, self.channels, self.latent_dim, self.dtype)
        self.decoder = _Decoder(self.arch, tuple(self.data_shape), tuple(self.hidden), tuple(self.channels),
                                self.dtype)

    def encode(self, x: jax.Array) -> jax.Array:
        """Code ``h = a(f(x))``, shape ``[B, latent_dim]``."""
        return CODE_ACTIVATIONS[self.code_activation](
            self.encoder(_flatten_input(self.arch, x, tuple(self.data_shape))))

    def decode(self, h: jax.Array) -> jax.Array:
        """Decoder output ``g(h)`` of shape ``[B, *data_shape]``."""
        return self.decoder(h)

    def decoder_mean(self, h: jax.Array) -> jax.Array:
        """Reconstruction in data space: ``σ(g(h))`` for the Bernoulli decoder, ``g(h)`` for the Gaussian."""
        out = self.decode(h)
        return jax.nn.sigmoid(out) if self.decoder_dist == "bernoulli" else out

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(g(h), h)`` with ``h`` the code of ``x``."""
        h = self.encode(x)
        return self.decode(h), h


class VAE(nn.Module):
    """Variational autoencoder (Kingma & Welling 2014): Gaussian encoder ``q(z|x) = N(μ(x), diag σ²(x))``,
    prior ``N(0, I)``, Bernoulli or Gaussian decoder (see the module docstring for the variance)."""

    data_shape: tuple[int, ...]
    latent_dim: int
    arch: str = "mlp"
    hidden: Sequence[int] = (256,)
    channels: Sequence[int] = (16, 32)
    decoder_dist: str = "bernoulli"
    gaussian_variance: str = "learned"
    fixed_logvar: float = -2.0
    min_logvar: float = -9.0
    dtype: Any = jnp.float32  # computation dtype of the conv encoder/decoder (parameters stay float32)

    def setup(self) -> None:
        self.encoder = _encoder(self.arch, self.hidden, self.channels, 2 * self.latent_dim, self.dtype)
        self.decoder = _Decoder(self.arch, tuple(self.data_shape), tuple(self.hidden), tuple(self.channels),
                                self.dtype)
        if self.decoder_dist == "gaussian" and self.gaussian_variance == "learned":
            self.raw_logvar = self.param("raw_logvar", nn.initializers.zeros, tuple(self.data_shape))

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(μ, log σ²)`` of ``q(z|x)``, each ``[B, latent_dim]``."""
        out = self.encoder(_flatten_input(self.arch, x, tuple(self.data_shape)))
        mean, logvar = jnp.split(out, 2, axis=-1)
        return mean, logvar

    def decoder_logvar(self) -> jax.Array:
        """Log-variance of the Gaussian decoder: the constant ``fixed_logvar`` or the learned, floored
        ``min_logvar + softplus(raw − min_logvar)``."""
        if self.gaussian_variance == "fixed":
            return jnp.full(tuple(self.data_shape), self.fixed_logvar)
        return self.min_logvar + jax.nn.softplus(self.raw_logvar - self.min_logvar)

    def decode(self, z: jax.Array) -> jax.Array:
        """Decoder output for latents ``[..., d]``: logits (Bernoulli) or mean (Gaussian)."""
        return self.decoder(z)

    def log_likelihood(self, x: jax.Array, z: jax.Array) -> jax.Array:
        """``log p(x|z)`` per example, summed over the data dimensions."""
        out = self.decode(z)
        event_ndim = len(self.data_shape)
        if self.decoder_dist == "bernoulli":
            return losses.bernoulli_log_likelihood(out, x, event_ndim)
        return losses.gaussian_log_likelihood(x, out, self.decoder_logvar(), event_ndim)

    def decoder_mean(self, z: jax.Array) -> jax.Array:
        """``E[x|z]``: ``σ(ℓ)`` for the Bernoulli decoder, ``μ`` for the Gaussian decoder."""
        out = self.decode(z)
        return jax.nn.sigmoid(out) if self.decoder_dist == "bernoulli" else out

    def decoder_sample(self, key: jax.Array, z: jax.Array) -> jax.Array:
        """``x ~ p(x|z)``."""
        out = self.decode(z)
        if self.decoder_dist == "bernoulli":
            return jax.random.bernoulli(key, jax.nn.sigmoid(out)).astype(out.dtype)
        return out + jnp.exp(0.5 * self.decoder_logvar()) * jax.random.normal(key, out.shape, out.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``log p(x | z = μ(x))`` (used to initialize every parameter)."""
        mean, _ = self.encode(x)
        return self.log_likelihood(x, mean)
