"""Likelihood units: conversions invert each other, match hand values and the discretization of a density."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp as np_logsumexp

from gm_jax.core.errors import ConfigError
from gm_jax.metrics import likelihood as lk


def test_bits_and_nats_invert_and_match_hand_values():
    assert float(lk.nats_to_bits_per_dim(math.log(2.0), 1)) == pytest.approx(1.0)
    assert float(lk.nats_to_bits_per_dim(1.0, 1)) == pytest.approx(1.0 / math.log(2.0))
    # 784 dims at 1 bit each are 784 ln 2 nats.
    assert float(lk.bits_per_dim_to_nats(1.0, 784)) == pytest.approx(784 * math.log(2.0))
    x = jnp.array([0.3, 12.0, 500.0])
    np.testing.assert_allclose(lk.bits_per_dim_to_nats(lk.nats_to_bits_per_dim(x, 3072), 3072), x, rtol=1e-6)


def test_log_mean_exp_and_iwae_against_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 7)) * 30.0  # large spread: a naive exp would overflow float32
    ref = np_logsumexp(x, axis=0) - math.log(5)
    np.testing.assert_allclose(lk.log_mean_exp(jnp.asarray(x, jnp.float32), axis=0), ref, rtol=1e-5)
    np.testing.assert_allclose(lk.iwae_bound(jnp.asarray(x, jnp.float32)), ref, rtol=1e-5)
    np.testing.assert_allclose(lk.importance_sampled_nll(jnp.asarray(x, jnp.float32)), -ref, rtol=1e-5)
    # One sample: the bound is the log weight itself (the ELBO estimate).
    np.testing.assert_allclose(lk.iwae_bound(jnp.asarray(x[:1], jnp.float32)), x[0], rtol=1e-6)


@pytest.mark.parametrize("value_range", [(0.0, 1.0), (-1.0, 1.0)])
def test_uniform_density_is_eight_bits_per_dim(value_range):
    # The uniform density on [lo, hi]^D puts 1/256 on every 8-bit bin: exactly 8 bits/dim.
    d = 12
    nll_uniform = d * math.log(value_range[1] - value_range[0])
    bpd = lk.continuous_nll_to_bits_per_dim(nll_uniform, d, value_range, 256)
    assert float(bpd) == pytest.approx(8.0, rel=1e-6)


def test_dequantization_offset_hand_values():
    assert lk.dequantization_offset(3, (0.0, 1.0)) == pytest.approx(3 * math.log(256))
    assert lk.dequantization_offset(3, (-1.0, 1.0)) == pytest.approx(3 * math.log(128))


def test_correction_matches_discretized_gaussian():
    # A smooth density: bin probabilities (cdf differences) agree with density * bin width.
    lo, hi, levels = -1.0, 1.0, 256
    width = (hi - lo) / levels
    centers = lo + width * (np.arange(levels) + 0.5)
    dist = stats.norm(0.1, 0.4)
    exact = -np.log(dist.cdf(centers + width / 2) - dist.cdf(centers - width / 2))
    approx = lk.discrete_nll_from_continuous(-dist.logpdf(centers), 1, (lo, hi), levels)
    np.testing.assert_allclose(np.asarray(approx), exact, atol=1e-3)


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError, match="value_range"):
        lk.dequantization_offset(3, (1.0, 0.0))
    with pytest.raises(ConfigError, match="num_dims"):
        lk.nats_to_bits_per_dim(1.0, 0)


def test_jit_compatible():
    f = jax.jit(lambda w: lk.importance_sampled_nll(w, axis=0))
    assert f(jnp.zeros((4, 2))).shape == (2,)
