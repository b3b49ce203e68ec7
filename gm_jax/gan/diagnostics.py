"""Sample-quality diagnostics for toy mixtures and class-conditional models.

Mode counting follows the protocol of Srivastava et al. 2017 (VEEGAN, Sec. 5.1) and Metz et al. 2017: a
sample is high quality if it lies within ``3 std`` of its nearest mode centre; a mode is covered if at least
``min_count`` high-quality samples fall on it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gm_jax.core.errors import require


def ring_centres(num_modes: int = 8, radius: float = 2.0) -> jax.Array:
    """Centres ``radius (cos 2 pi k / K, sin 2 pi k / K)``, ``k = 0..K-1`` of the ring of Gaussians."""
    require(num_modes >= 1, f"num_modes must be >= 1, got {num_modes}")
    angles = 2.0 * jnp.pi * jnp.arange(num_modes) / num_modes
    return radius * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)


def grid_centres(side: int = 5, spacing: float = 2.0) -> jax.Array:
    """Centres of the ``side x side`` grid of Gaussians, spaced ``spacing`` apart and centred on 0
    (``side=5, spacing=2``: the 25-Gaussians set on ``{-4, -2, 0, 2, 4}^2``)."""
    require(side >= 1, f"side must be >= 1, got {side}")
    ticks = spacing * (jnp.arange(side) - (side - 1) / 2.0)
    gx, gy = jnp.meshgrid(ticks, ticks, indexing="ij")
    return jnp.stack([gx.ravel(), gy.ravel()], axis=-1)


class ModeCoverage(NamedTuple):
    """``modes_covered`` (int), ``high_quality_fraction`` (in [0, 1]) and the per-mode high-quality
    ``counts`` ``[K]``."""

    modes_covered: jax.Array
    high_quality_fraction: jax.Array
    counts: jax.Array


def mode_coverage(samples: jax.Array, centres: jax.Array, std: float | jax.Array,
                  min_count: int | jax.Array = 1, num_std: float | jax.Array = 3.0) -> ModeCoverage:
    """Assign each sample ``[N, D]`` to its nearest centre ``[K, D]``; it is high quality if the distance
    is below ``num_std * std``; a mode is covered if it has ``>= min_count`` high-quality samples."""
    require(samples.ndim == 2 and centres.ndim == 2 and samples.shape[1] == centres.shape[1],
            f"samples [N, D] and centres [K, D] must share D; got {tuple(samples.shape)} and "
            f"{tuple(centres.shape)}")
    dist = jnp.linalg.norm(samples[:, None, :] - centres[None, :, :], axis=-1)
    nearest = jnp.argmin(dist, axis=1)
    good = jnp.min(dist, axis=1) < num_std * std
    counts = jnp.zeros(centres.shape[0], jnp.int32).at[nearest].add(good.astype(jnp.int32))
    return ModeCoverage(jnp.sum(counts >= min_count), jnp.mean(good), counts)


class ClassHistogram(NamedTuple):
    """Fraction of samples per predicted class ``[C]``, the KL divergence of that histogram from the uniform
    distribution (nats; 0 when balanced, ``log C`` when one class only), and the number of classes hit."""

    fractions: jax.Array
    kl_from_uniform: jax.Array
    classes_hit: jax.Array


def class_histogram(class_probs: jax.Array) -> ClassHistogram:
    """Histogram of ``argmax`` classes from classifier probabilities ``[N, C]`` of generated samples, and
    ``KL(h || U) = sum_c h_c log(C h_c)``, a mode-dropping score for class-conditional data."""
    require(class_probs.ndim == 2, f"class_probs must be [N, C], got shape {tuple(class_probs.shape)}")
    num_classes = class_probs.shape[1]
    pred = jnp.argmax(class_probs, axis=1)
    fractions = jnp.bincount(pred, length=num_classes) / class_probs.shape[0]
    terms = jnp.where(fractions > 0, fractions * jnp.log(num_classes * jnp.where(fractions > 0, fractions, 1)),
                      0.0)
    return ClassHistogram(fractions, jnp.sum(terms), jnp.sum(fractions > 0))
