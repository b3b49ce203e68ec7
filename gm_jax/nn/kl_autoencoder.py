"""The KL-regularized autoencoder of latent diffusion's first stage (Rombach et al. 2022, Sec. 3.1 and
the appendix): a conv encoder to a spatial Gaussian q(z|x) = N(μ(x), diag σ²(x)) (e.g. 28×28×1 → 7×7×4 with two
stride-2 levels), a reparametrized sample z = μ + σ ⊙ ε (Kingma & Welling 2014), a conv decoder back, the
closed-form KL to N(0, I), and the latent scale factor that gives the diffusion model unit-variance latents
(Rombach et al. 2022, Sec. 4.3.2 and the appendix: latents are rescaled by 1/σ̂ estimated on a batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gm_jax.core.errors import require
from gm_jax.nn.attention import group_count

LOGVAR_RANGE = (-30.0, 20.0)  # clip of log σ² for numerical safety, as in the reference implementation


def kl_loss(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(μ, diag e^{logvar}) ‖ N(0, I)) = ½ Σ (μ² + e^{logvar} − 1 − logvar), summed over every axis but
    the first (Kingma & Welling 2014, App. B): one value per example, shape [B], float32."""
    mean, logvar = jnp.asarray(mean, jnp.float32), jnp.asarray(logvar, jnp.float32)
    terms = jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar
    return 0.5 * jnp.sum(terms.reshape(terms.shape[0], -1), axis=-1)


def reparameterize(mean: jax.Array, logvar: jax.Array, key: jax.Array) -> jax.Array:
    """z = μ + exp(½ logvar) ⊙ ε, ε ~ N(0, I) (Kingma & Welling 2014, Sec. 2.4)."""
    eps = jax.random.normal(key, mean.shape, jnp.float32)
    return mean + jnp.exp(0.5 * logvar) * eps


def latent_scale_factor(latents: jax.Array) -> jax.Array:
    """1 / std(latents) over all entries of a batch of latents, so that ``factor · z`` has unit variance
    (Rombach et al. 2022, Sec. 4.3.2 and the appendix; computed once on a batch of encodings and then fixed)."""
    return 1.0 / jnp.std(jnp.asarray(latents, jnp.float32))


class KLEncoder(nn.Module):
    """x [B, H, W, C] → (μ, logvar), each [B, H/2^n, W/2^n, latent_channels], n = len(channels): a 3×3
    conv, per level a stride-2 3×3 conv + GN + swish and a 3×3 conv + GN + swish, then a 3×3 conv to
    2·latent_channels split into μ and the clipped log-variance."""

    channels: Sequence[int] = (32, 64)
    latent_channels: int = 4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        dt, factor = self.dtype, 2 ** len(self.channels)
        require(x.shape[1] % factor == 0 and x.shape[2] % factor == 0,
                f"KLAutoencoder with {len(self.channels)} levels needs image sides divisible by {factor}, "
                f"got {x.shape[1]}x{x.shape[2]}; pad the images or change model channels")
        h = nn.Conv(self.channels[0], (3, 3), dtype=dt, name="conv_in")(jnp.asarray(x, dt))
        for i, ch in enumerate(self.channels):
            h = nn.Conv(ch, (3, 3), strides=(2, 2), dtype=dt, name=f"down{i}")(h)
            h = nn.swish(nn.GroupNorm(num_groups=group_count(ch), dtype=dt, name=f"down{i}_norm")(h))
            h = nn.Conv(ch, (3, 3), dtype=dt, name=f"conv{i}")(h)
            h = nn.swish(nn.GroupNorm(num_groups=group_count(ch), dtype=dt, name=f"conv{i}_norm")(h))
        moments = nn.Conv(2 * self.latent_channels, (3, 3), dtype=dt, name="conv_out")(h).astype(jnp.float32)
        mean, logvar = jnp.split(moments, 2, axis=-1)
        return mean, jnp.clip(logvar, *LOGVAR_RANGE)


class KLDecoder(nn.Module):
    """z [B, h, w, latent_channels] → x̂ [B, h·2^n, w·2^n, out_channels]: a 3×3 conv to channels[-1], per
    level (coarse → fine) nearest 2× upsampling + 3×3 conv + GN + swish, then a 3×3 conv (no output
    activation: the decoder predicts data-space values, float32)."""

    channels: Sequence[int] = (32, 64)
    out_channels: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        dt = self.dtype
        h = nn.Conv(self.channels[-1], (3, 3), dtype=dt, name="conv_in")(jnp.asarray(z, dt))
        for j, ch in enumerate(reversed(self.channels)):
            b, hh, ww, c = h.shape
            h = nn.Conv(ch, (3, 3), dtype=dt, name=f"up{j}")(jax.image.resize(h, (b, 2 * hh, 2 * ww, c), "nearest"))
            h = nn.swish(nn.GroupNorm(num_groups=group_count(ch), dtype=dt, name=f"up{j}_norm")(h))
        return nn.Conv(self.out_channels, (3, 3), dtype=dt, name="conv_out")(h).astype(jnp.float32)


class KLAutoencoder(nn.Module):
    """First-stage autoencoder of latent diffusion (Rombach et al. 2022, Sec. 3.1).

    ``__call__(x, key=None) -> (x̂, μ, logvar)`` decodes z = μ + σ ⊙ ε with ε drawn from ``key`` (z = μ
    when ``key`` is None); ``encode(x) -> (μ, logvar)``; ``decode(z) -> x̂``. With the defaults a 28×28×1
    image has a 7×7×4 latent. Train with a reconstruction loss + β · mean(:func:`kl_loss`)."""

    image_channels: int = 1
    latent_channels: int = 4
    channels: Sequence[int] = (32, 64)
    dtype: Any = jnp.float32

    def setup(self) -> None:
        self.encoder = KLEncoder(tuple(self.channels), self.latent_channels, self.dtype)
        self.decoder = KLDecoder(tuple(self.channels), self.image_channels, self.dtype)

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(μ, logvar) of q(z|x), each [B, H/2^n, W/2^n, latent_channels]."""
        return self.encoder(x)

    def decode(self, z: jax.Array) -> jax.Array:
        """x̂ = decoder(z), [B, h·2^n, w·2^n, image_channels]."""
        return self.decoder(z)

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
        mean, logvar = self.encode(x)
        z = mean if key is None else reparameterize(mean, logvar, key)
        return self.decode(z), mean, logvar
