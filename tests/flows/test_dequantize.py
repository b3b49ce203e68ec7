"""Uniform dequantization (gm_jax.core.dequantize, shared by flows and flow matching): each level lands in
its own bin, the bins tile the range, and the continuous-to-discrete NLL correction is exact for a uniform
density."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core import ConfigError, bin_width, uniform_dequantize
from gm_jax.metrics.likelihood import discrete_nll_from_continuous


@pytest.mark.parametrize("value_range,levels", [((-1.0, 1.0), 256), ((0.0, 1.0), 256), ((0.0, 1.0), 4)])
def test_each_level_fills_exactly_its_bin(value_range, levels):
    lo, hi = value_range
    k = np.tile(np.arange(levels), 400)
    x = jnp.asarray(lo + k * (hi - lo) / (levels - 1), jnp.float32)
    y = np.asarray(uniform_dequantize(jax.random.key(0), x, value_range, levels), np.float64)
    w = bin_width(value_range, levels)
    assert math.isclose(w, (hi - lo) / levels)
    u = (y - lo) / w - k                           # offset inside bin k: in [0, 1) up to float32 rounding
    assert np.abs(u - 0.5).max() <= 0.5 + 1e-4
    assert abs(u.mean() - 0.5) < 0.02 and abs(u.var() - 1 / 12) < 0.01         # U[0, 1)


def test_uniform_density_gives_the_exact_discrete_nll():
    # p(y) = 1/(hi − lo)^D on the dequantized data ⇒ P(k) = (Δ/(hi − lo))^D = 256^−D exactly
    dims, lo, hi = 784, -1.0, 1.0
    continuous_nll = dims * math.log(hi - lo)
    discrete = float(discrete_nll_from_continuous(continuous_nll, dims, (lo, hi), 256))
    np.testing.assert_allclose(discrete, dims * math.log(256), rtol=1e-6)


def test_bad_levels_and_range_are_one_line_errors():
    with pytest.raises(ConfigError, match="levels must be >= 2"):
        uniform_dequantize(jax.random.key(0), jnp.zeros(3), (0.0, 1.0), 1)
    with pytest.raises(ConfigError, match="increasing"):
        bin_width((1.0, 0.0), 256)
