"""Exact discrete likelihoods of PixelCNN: per-sub-pixel softmax and discretized logistic mixture.

Data ``x`` in ``value_range = (lo, hi)`` with ``L`` levels is the integer ``k = (x − lo)/(hi − lo)·(L − 1)``
(8-bit data comes as ``k/255`` scaled to the range; binarized data as ``k ∈ {0, 1}``). The network sees
``k`` rescaled to ``[-1, 1]``: ``u = 2k/(L − 1) − 1``. ``log p(x) = Σ_{i,j,c} log p(k_ijc | k_<ijc)`` in nats
(van den Oord et al. 2016a, eq. 1); bits/dim divide by ``H·W·C·ln 2``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.core.errors import ConfigError, require

#: below this bin mass the discretized logistic uses the density at the bin centre times the bin width
MIN_BIN_MASS = 1e-5


def check_integer_levels(x: np.ndarray | jax.Array, value_range: tuple[float, float], levels: int) -> None:
    """Host-side check that ``x`` holds exactly the ``levels`` discrete values ``lo + k(hi − lo)/(L − 1)``;
    raises a one-line ConfigError for dequantized or out-of-range input to a discrete likelihood."""
    require(levels >= 2, f"a discrete likelihood needs data levels >= 2, got {levels}")
    lo, hi = value_range
    k = (np.asarray(x, np.float64) - lo) / (hi - lo) * (levels - 1)
    if np.any(np.abs(k - np.round(k)) > 1e-3) or np.any(k < -1e-3) or np.any(k > levels - 1 + 1e-3):
        raise ConfigError(f"a discrete likelihood needs integer pixel levels 0..{levels - 1} scaled to "
                          f"{tuple(value_range)}, got non-integer or out-of-range values; "
                          "set data.dequantize=False")


def values_to_levels(x: jax.Array, value_range: tuple[float, float], levels: int) -> jax.Array:
    """``k = round((x − lo)/(hi − lo)·(L − 1))`` as int32, clipped to ``0..L−1`` (traceable; check the
    input first with :func:`check_integer_levels`)."""
    lo, hi = value_range
    k = jnp.round((x - lo) / (hi - lo) * (levels - 1))
    return jnp.clip(k, 0, levels - 1).astype(jnp.int32)


def levels_to_values(k: jax.Array, value_range: tuple[float, float], levels: int) -> jax.Array:
    """Inverse of :func:`values_to_levels`: ``x = lo + k(hi − lo)/(L − 1)``."""
    lo, hi = value_range
    return lo + k.astype(jnp.float32) * ((hi - lo) / (levels - 1))


def levels_to_unit(k: jax.Array, levels: int) -> jax.Array:
    """Network input ``u = 2k/(L − 1) − 1 ∈ [-1, 1]`` (Salimans et al. 2017, sec. 2.1 rescaling)."""
    return k.astype(jnp.float32) * (2.0 / (levels - 1)) - 1.0


def categorical_log_prob(logits: jax.Array, k: jax.Array) -> jax.Array:
    """``log softmax(logits)[k]`` per sub-pixel: the 256-way (``L``-way) softmax of van den Oord et al.
    2016a, sec. 5.1. ``logits [..., L]``, ``k [...]`` int."""
    return jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), k[..., None], axis=-1)[..., 0]


def split_mixture_params(params: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``[..., 3M]`` → mixture logits, means, log scales (each ``[..., M]``); log scales floored at −7 as
    in Salimans et al. 2017."""
    logit_w, mean, log_scale = jnp.split(params, 3, axis=-1)
    return logit_w, mean, jnp.maximum(log_scale, -7.0)


def discretized_logistic_mixture_log_prob(params: jax.Array, k: jax.Array, levels: int) -> jax.Array:
    """``log P(k)`` of a mixture of discretized logistics (Salimans et al. 2017, eq. 2) on ``u = 2k/(L−1)−1``
    with bin half-width ``δ = 1/(L − 1)``:
    ``P(k) = Σ_m π_m [σ((u + δ − μ_m)/s_m) − σ((u − δ − μ_m)/s_m)]``. Edge cases: for ``k = 0`` the lower
    edge is ``−∞`` (``P = σ((u + δ − μ)/s)``); for ``k = L − 1`` the upper edge is ``+∞``
    (``P = 1 − σ((u − δ − μ)/s)``). When an interior bin's mass is below ``MIN_BIN_MASS`` (float32
    cancellation), it is replaced by the logistic density at the bin centre times the bin width ``2δ``.
    Over ``k = 0 … L − 1`` the bins telescope, so the probabilities sum to one."""
    logit_w, mean, log_scale = split_mixture_params(params)
    half = 1.0 / (levels - 1)
    u = levels_to_unit(k, levels)[..., None]
    centered, inv_s = u - mean, jnp.exp(-log_scale)
    plus_in, min_in, mid_in = inv_s * (centered + half), inv_s * (centered - half), inv_s * centered
    log_cdf_plus = jax.nn.log_sigmoid(plus_in)            # k = 0
    log_one_minus_cdf_min = -jax.nn.softplus(min_in)       # k = L − 1
    bin_mass = jax.nn.sigmoid(plus_in) - jax.nn.sigmoid(min_in)
    log_pdf_mid = mid_in - log_scale - 2.0 * jax.nn.softplus(mid_in)
    interior = jnp.where(bin_mass > MIN_BIN_MASS, jnp.log(jnp.maximum(bin_mass, 1e-12)),
                         log_pdf_mid + math.log(2.0 * half))
    kk = k[..., None]
    log_p = jnp.where(kk == 0, log_cdf_plus, jnp.where(kk == levels - 1, log_one_minus_cdf_min, interior))
    return jax.scipy.special.logsumexp(log_p + jax.nn.log_softmax(logit_w, axis=-1), axis=-1)


def subpixel_log_prob(outputs: jax.Array, k: jax.Array, likelihood: str, levels: int) -> jax.Array:
    """Per-sub-pixel ``log p(k_ijc | k_<ijc)`` from network ``outputs [..., P]`` for ``likelihood``
    'categorical' (P = L) or 'logistic_mixture' (P = 3M)."""
    if likelihood == "categorical":
        return categorical_log_prob(outputs, k)
    return discretized_logistic_mixture_log_prob(outputs, k, levels)


def image_log_prob(outputs: jax.Array, k: jax.Array, likelihood: str, levels: int) -> jax.Array:
    """``log p(x) = Σ_{i,j,c} log p(k_ijc | k_<ijc)`` in nats per image (van den Oord et al. 2016a, eq. 1);
    ``outputs [B, H, W, C, P]``, ``k [B, H, W, C]``."""
    return jnp.sum(subpixel_log_prob(outputs, k, likelihood, levels), axis=(1, 2, 3))


def params_per_color(likelihood: str, levels: int, num_mixtures: int) -> int:
    """Network outputs per sub-pixel: ``L`` logits, or ``3M`` mixture parameters."""
    return levels if likelihood == "categorical" else 3 * num_mixtures
