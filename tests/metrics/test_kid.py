"""KID: the unbiased polynomial-kernel MMD^2 against a direct O(n^2) loop, unbiasedness, power."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core.errors import ConfigError
from gm_jax.metrics.kid import kid, polynomial_mmd2


def direct_unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased estimator written out pair by pair in float64."""
    d = x.shape[1]
    k = lambda a, b: (float(a @ b) / d + 1.0) ** 3
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_matches_direct_computation():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 6)), rng.normal(0.3, 1.2, size=(25, 6))
    expected = direct_unbiased_mmd2(x, y)
    assert float(polynomial_mmd2(jnp.asarray(x), jnp.asarray(y))) == pytest.approx(expected, rel=1e-4)


def test_one_full_subset_equals_full_estimate():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 5)), rng.normal(0.5, 1.0, size=(40, 5))
    mean, std = kid(x, y, jax.random.key(0), num_subsets=1, subset_size=40)
    assert mean == pytest.approx(direct_unbiased_mmd2(x, y), rel=1e-4)
    assert std == 0.0


def test_unbiased_for_one_distribution_and_biased_version_is_not():
    # Many independent small samples: the unbiased estimates average to 0 within 4 standard errors,
    # while the V-statistic (diagonal included) is clearly positive: the test can tell them apart.
    keys = jax.random.split(jax.random.key(2), 2000)
    xs = jax.vmap(lambda k: jax.random.normal(k, (2, 8, 4)))(keys)
    unbiased = np.asarray(jax.vmap(lambda s: polynomial_mmd2(s[0], s[1]))(xs), np.float64)
    se = unbiased.std() / np.sqrt(len(unbiased))
    assert abs(unbiased.mean()) < 4 * se

    def biased(s):
        kern = lambda a, b: (a @ b.T / a.shape[1] + 1.0) ** 3
        return kern(s[0], s[0]).mean() + kern(s[1], s[1]).mean() - 2 * kern(s[0], s[1]).mean()

    v_stat = np.asarray(jax.vmap(biased)(xs), np.float64)
    assert v_stat.mean() > 4 * v_stat.std() / np.sqrt(len(v_stat))


def test_kid_near_zero_for_same_and_positive_for_different_distributions():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(600, 16)), rng.normal(size=(600, 16))
    c = rng.normal(0.5, 1.0, size=(600, 16))
    key = jax.random.key(3)
    same_mean, same_std = kid(a, b, key, num_subsets=20, subset_size=200)
    diff_mean, diff_std = kid(a, c, key, num_subsets=20, subset_size=200)
    assert abs(same_mean) < 3 * same_std
    assert diff_mean > 3 * diff_std and diff_mean > 10 * abs(same_mean)


def test_bad_arguments_raise_config_error():
    x = np.zeros((10, 3))
    with pytest.raises(ConfigError, match="subset_size"):
        kid(x, x, jax.random.key(0), num_subsets=2, subset_size=11)
    with pytest.raises(ConfigError, match="one width"):
        kid(x, np.zeros((10, 4)), jax.random.key(0), subset_size=5)
