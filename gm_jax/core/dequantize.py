"""Uniform dequantization of discrete data, shared by the continuous-density families (flows, flow matching).

``x`` holds the discrete values ``lo + (hi − lo) k / (L − 1)``, ``k = 0 … L − 1``; dequantization replaces
level ``k`` by a uniform draw from the bin ``[lo + (hi − lo) k / L, lo + (hi − lo)(k + 1) / L)`` it owns
(Theis et al. 2016, sec. 3.1; Dinh et al. 2017, sec. 4.1). The bins tile ``[lo, hi)``; a density fitted to
the result bounds the discrete NLL (see ``gm_jax.metrics.likelihood.discrete_nll_from_continuous``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gm_jax.core.errors import require


def bin_width(value_range: tuple[float, float], levels: int) -> float:
    """Width of one quantization bin after :func:`uniform_dequantize`: ``(hi − lo) / levels``."""
    require(levels >= 2, f"levels must be >= 2 for discrete data, got {levels}")
    lo, hi = value_range
    require(hi > lo, f"value_range must be increasing, got {value_range}")
    return (hi - lo) / levels


def uniform_dequantize(key: jax.Array, x: jax.Array, value_range: tuple[float, float],
                       levels: int) -> jax.Array:
    """``lo + (hi − lo)(k + u) / L`` with ``k = round((x − lo)/(hi − lo)·(L − 1))`` and ``u ~ U[0, 1)``
    (Theis et al. 2016, sec. 3.1): bin ``k`` becomes the interval of width ``(hi − lo)/L`` that it owns."""
    width = bin_width(value_range, levels)
    lo, hi = value_range
    k = jnp.clip(jnp.round((x - lo) / (hi - lo) * (levels - 1)), 0, levels - 1)
    u = jax.random.uniform(key, x.shape, x.dtype)
    return lo + (k + u) * width
