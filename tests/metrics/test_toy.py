"""Toy-data distances: RBF MMD against a direct loop, sliced Wasserstein closed forms, energy distance
against scipy."""

import jax
import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats

from gm_jax.core.errors import ConfigError
from gm_jax.metrics.toy import energy_distance, rbf_mmd2, sliced_wasserstein, wasserstein_1d


def test_rbf_mmd2_matches_direct_computation():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(15, 2)), rng.normal(0.5, 1.0, size=(18, 2))
    widths = (0.5, 1.0, 3.0)
    k = lambda a, b: sum(np.exp(-np.sum((a - b) ** 2) / (2 * s**2)) for s in widths)
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    assert float(rbf_mmd2(x, y, widths)) == pytest.approx(xx + yy - 2 * xy, rel=1e-4)


def test_rbf_mmd2_near_zero_for_same_and_positive_for_shifted():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(400, 2)), rng.normal(size=(400, 2))
    same = float(rbf_mmd2(a, b))
    shifted = float(rbf_mmd2(a, b + np.array([1.0, 0.0])))
    assert abs(same) < 0.02 * shifted
    assert shifted > 0.05


def test_wasserstein_1d_matches_scipy_for_unequal_sizes():
    rng = np.random.default_rng(2)
    u, v = rng.normal(size=37), rng.exponential(size=53)
    expected = scipy.stats.wasserstein_distance(u, v)
    assert float(wasserstein_1d(u, v, 1.0)) == pytest.approx(expected, rel=1e-5)


def test_wasserstein_1d_p2_matches_quantile_integral():
    rng = np.random.default_rng(3)
    u, v = rng.normal(size=7), rng.normal(1.0, 2.0, size=11)
    t = (np.arange(200_000) + 0.5) / 200_000  # midpoint rule on the quantile functions
    qu = np.quantile(u, t, method="inverted_cdf")
    qv = np.quantile(v, t, method="inverted_cdf")
    assert float(wasserstein_1d(u, v, 2.0)) == pytest.approx(np.mean((qu - qv) ** 2), rel=1e-3)


def test_sliced_wasserstein_of_shifted_1d_samples_equals_the_shift():
    x = np.random.default_rng(4).normal(size=(300, 1))
    key = jax.random.key(0)
    for p in (1.0, 2.0):  # in 1-D every projection is +-1, so SW_p = W_p = |shift|
        assert float(sliced_wasserstein(x, x + 0.7, key, num_projections=8, p=p)) == pytest.approx(0.7, rel=1e-5)


def test_sliced_wasserstein_of_translation_in_2d():
    # W_2 between theta.x and theta.(x + s) is |theta.s|; E(theta.s)^2 = |s|^2 / 2 on the circle.
    x = np.random.default_rng(5).normal(size=(200, 2))
    s = np.array([3.0, 4.0])
    value = float(sliced_wasserstein(x, x + s, jax.random.key(1), num_projections=4000, p=2.0))
    assert value == pytest.approx(5.0 / np.sqrt(2.0), rel=0.03)
    rng = np.random.default_rng(6)
    same = float(sliced_wasserstein(rng.normal(size=(500, 2)), rng.normal(size=(500, 2)), jax.random.key(2)))
    assert same < 0.15


def test_energy_distance_matches_scipy_in_1d():
    rng = np.random.default_rng(7)
    u, v = rng.normal(size=40), rng.normal(0.5, 1.5, size=60)
    assert float(energy_distance(u, v)) == pytest.approx(scipy.stats.energy_distance(u, v), rel=1e-4)


def test_energy_distance_in_2d_matches_cdist_and_is_zero_for_identical_sets():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(30, 2)), rng.normal(1.0, 1.0, size=(45, 2))
    cd = scipy.spatial.distance.cdist
    expected = np.sqrt(2 * cd(x, y).mean() - cd(x, x).mean() - cd(y, y).mean())
    assert float(energy_distance(x, y)) == pytest.approx(expected, rel=1e-4)
    assert float(energy_distance(x, x)) == pytest.approx(0.0, abs=1e-3)


def test_bad_inputs_raise_config_error():
    with pytest.raises(ConfigError, match="one dimension"):
        energy_distance(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ConfigError, match="bandwidths"):
        rbf_mmd2(np.zeros((4, 2)), np.ones((4, 2)), (1.0, -1.0))
    with pytest.raises(ConfigError, match="p must be"):
        sliced_wasserstein(np.zeros((4, 2)), np.ones((4, 2)), jax.random.key(0), p=0.5)
