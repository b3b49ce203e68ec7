"""Likelihood units: nats ↔ bits per dimension, log-mean-exp, the importance-weighted bound, and the
correction that turns a continuous density's NLL on scaled 8-bit data into a discrete NLL.

Conventions (all functions act elementwise on per-example values unless an axis is given):

- NLL values are in **nats** per example, summed over the ``D`` data dimensions.
- bits/dim = NLL / (D · ln 2).
- ``iwae_bound(log_w) = logsumexp_i(log w_i) − log k``, a lower bound on ``log p(x)`` (Burda et al. 2016,
  eq. 8); ``importance_sampled_nll = −iwae_bound`` is the matching upper bound on the NLL.
- Dequantization (Theis et al. 2016, sec. 3.1; Papamakarios et al. 2017, sec. E.2): 8-bit data ``k`` in
  ``{0, …, 255}`` scaled to ``[lo, hi]`` lives on bins of width ``Δ = (hi − lo) / 256``. A continuous density
  ``p`` fitted to uniformly dequantized data defines bin probabilities ``P(k) = ∫_bin p ≈ p(x) Δ^D``, so
  ``−log P = −log p(x) + D · log(1/Δ)``; for ``[0, 1]`` that adds ``D log 256`` nats, for ``[−1, 1]``
  ``D log 128``. By Jensen the result upper-bounds the discrete model's NLL.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import log_ndtr, logsumexp

from gm_jax.core.errors import require


def nats_to_bits_per_dim(nats: jax.Array, num_dims: int) -> jax.Array:
    """``bpd = nats / (D · ln 2)`` for an NLL of ``nats`` summed over ``D = num_dims`` dimensions."""
    require(num_dims > 0, f"num_dims must be a positive number of data dimensions, got {num_dims}")
    return jnp.asarray(nats) / (num_dims * math.log(2.0))


def bits_per_dim_to_nats(bits_per_dim: jax.Array, num_dims: int) -> jax.Array:
    """Inverse of :func:`nats_to_bits_per_dim`: ``nats = bpd · D · ln 2``."""
    require(num_dims > 0, f"num_dims must be a positive number of data dimensions, got {num_dims}")
    return jnp.asarray(bits_per_dim) * (num_dims * math.log(2.0))


def log_mean_exp(x: jax.Array, axis: int = -1) -> jax.Array:
    """``log((1/n) Σ_i exp(x_i)) = logsumexp(x) − log n`` along ``axis``, computed stably."""
    x = jnp.asarray(x)
    return logsumexp(x, axis=axis) - math.log(x.shape[axis])


def iwae_bound(log_weights: jax.Array, axis: int = 0) -> jax.Array:
    """Importance-weighted lower bound on ``log p(x)`` from ``k`` log weights
    ``log w_i = log p(x, z_i) − log q(z_i | x)`` along ``axis``:
    ``L_k = logsumexp_i(log w_i) − log k`` (Burda et al. 2016, eq. 8). ``L_1`` is the ELBO and
    ``E[L_k]`` increases with ``k`` towards ``log p(x)``."""
    return log_mean_exp(log_weights, axis=axis)


def importance_sampled_nll(log_weights: jax.Array, axis: int = 0) -> jax.Array:
    """Importance-sampled NLL estimate ``−L_k = −(logsumexp_i(log w_i) − log k)`` in nats (an upper bound
    on ``−log p(x)`` in expectation; Burda et al. 2016, eq. 8)."""
    return -iwae_bound(log_weights, axis=axis)


def dequantization_offset(num_dims: int, value_range: tuple[float, float] = (0.0, 1.0),
                          levels: int = 256) -> float:
    """``D · log(levels / (hi − lo))`` nats: the term added to a continuous NLL to get the discrete NLL of
    ``levels``-level data scaled to ``value_range`` (Theis et al. 2016, sec. 3.1). ``D log 256`` for
    ``[0, 1]``, ``D log 128`` for ``[−1, 1]``."""
    lo, hi = float(value_range[0]), float(value_range[1])
    require(hi > lo, f"value_range must satisfy lo < hi, got {value_range}")
    require(levels >= 2, f"levels must be >= 2 (256 for 8-bit data), got {levels}")
    require(num_dims > 0, f"num_dims must be a positive number of data dimensions, got {num_dims}")
    return num_dims * math.log(levels / (hi - lo))


def discrete_nll_from_continuous(nll_nats: jax.Array, num_dims: int,
                                 value_range: tuple[float, float] = (0.0, 1.0),
                                 levels: int = 256) -> jax.Array:
    """Discrete NLL (nats) of quantized data from a continuous density's NLL on the scaled data:
    ``−log P(k) = −log p(x) + D · log(levels / (hi − lo))`` (Theis et al. 2016; Papamakarios et al. 2017)."""
    return jnp.asarray(nll_nats) + dequantization_offset(num_dims, value_range, levels)


def continuous_nll_to_bits_per_dim(nll_nats: jax.Array, num_dims: int,
                                   value_range: tuple[float, float] = (0.0, 1.0),
                                   levels: int = 256) -> jax.Array:
    """Bits/dim of quantized data from a continuous NLL on the scaled data: the dequantization correction
    of :func:`discrete_nll_from_continuous` followed by ``/(D ln 2)``."""
    return nats_to_bits_per_dim(discrete_nll_from_continuous(nll_nats, num_dims, value_range, levels),
                                num_dims)


def discretized_gaussian_log_prob(x: jax.Array, mean: jax.Array, log_scale: jax.Array,
                                  value_range: tuple[float, float], levels: int) -> jax.Array:
    """``log P(x)`` per element of ``levels``-level data ``x = lo + k(hi − lo)/(L − 1)`` under a Gaussian
    ``N(mean, exp(log_scale)²)`` discretized to the levels' bins (Ho et al. 2020, eq. 13):
    ``P = Φ((x + δ − μ)/σ) − Φ((x − δ − μ)/σ)`` with ``δ = (hi − lo)/(2(L − 1))``, the lower edge ``−∞`` for
    ``k = 0`` and the upper edge ``+∞`` for ``k = L − 1`` (so the probabilities of the L levels sum to one).
    Differences of ``Φ`` are taken on the side of the smaller tail (``Φ(b) − Φ(a) = Φ(−a) − Φ(−b)``)."""
    lo, hi = value_range
    half = (hi - lo) / (2.0 * (levels - 1))
    inv_s = jnp.exp(-log_scale)
    plus, minus = inv_s * (x + half - mean), inv_s * (x - half - mean)
    flip = minus > 0  # both edges in the upper tail: use the mirrored lower tail
    a, b = jnp.where(flip, -plus, minus), jnp.where(flip, -minus, plus)
    log_b = log_ndtr(b)
    interior = log_b + jnp.log(-jnp.expm1(jnp.minimum(log_ndtr(a) - log_b, -1e-12)))
    return jnp.where(x <= lo + half, log_ndtr(plus), jnp.where(x >= hi - half, log_ndtr(-minus), interior))
