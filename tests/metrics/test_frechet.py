"""Fréchet distance / FID: closed forms, an independent scipy.linalg.sqrtm reference, invariants."""

import numpy as np
import pytest
import scipy.linalg

from gm_jax.core.errors import ConfigError
from gm_jax.metrics.frechet import FewSamplesWarning, feature_statistics, fid, frechet_distance


def random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_equal_covariances_give_squared_mean_distance():
    rng = np.random.default_rng(0)
    cov = random_spd(rng, 16)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    expected = float(np.sum((mu1 - mu2) ** 2))
    assert frechet_distance(mu1, cov, mu2, cov) == pytest.approx(expected, rel=1e-8)


def test_diagonal_covariances_closed_form():
    # For commuting (diagonal) covariances d^2 = ||mu1 - mu2||^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2.
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.1, 3.0, 12), rng.uniform(0.1, 3.0, 12)
    mu1, mu2 = rng.normal(size=12), rng.normal(size=12)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("d", [5, 64])
def test_agrees_with_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    c1, c2 = random_spd(rng, d), random_spd(rng, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    root = scipy.linalg.sqrtm(c1 @ c2)
    assert np.max(np.abs(np.imag(root))) < 1e-8  # the reference itself is real here
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(np.real(root))
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(reference, rel=1e-6)


def test_symmetric_and_zero_for_identical_statistics():
    rng = np.random.default_rng(2)
    c1, c2 = random_spd(rng, 10), random_spd(rng, 10)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(frechet_distance(mu2, c2, mu1, c1), rel=1e-9)
    assert frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-9 * np.trace(c1))
    features = rng.normal(size=(200, 10))
    assert fid(features, features) == pytest.approx(0.0, abs=1e-9)


def test_feature_statistics_match_numpy_and_fid_of_shifted_gaussians():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 6))
    mu, cov = feature_statistics(x)
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-10)
    # Translating a sample set translates its mean only: FID = ||shift||^2 exactly.
    shift = rng.normal(size=6)
    assert fid(x, x + shift) == pytest.approx(float(shift @ shift), rel=1e-8)


def test_fewer_samples_than_dimensions_warns_and_stays_real():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(10, 32)), rng.normal(size=(12, 32)) + 0.5
    with pytest.warns(FewSamplesWarning, match="at least 33 samples"):
        value = fid(a, b)
    assert isinstance(value, float) and np.isfinite(value) and value > 0


def test_rank_deficient_covariances_are_handled():
    rng = np.random.default_rng(5)
    u = rng.normal(size=(8, 3))
    c1 = u @ u.T  # rank 3
    c2 = np.zeros((8, 8))
    # With C2 = 0 the trace term vanishes: d^2 = ||mu1 - mu2||^2 + tr(C1).
    assert frechet_distance(np.zeros(8), c1, np.ones(8), c2) == pytest.approx(8 + np.trace(c1), rel=1e-10)


def test_bad_inputs_raise_config_error():
    eye = np.eye(3)
    with pytest.raises(ConfigError, match="cov1"):
        frechet_distance(np.zeros(3), np.eye(4), np.zeros(3), eye)
    with pytest.raises(ConfigError, match="positive semi-definite"):
        frechet_distance(np.zeros(3), -eye, np.zeros(3), eye)
    with pytest.raises(ConfigError, match="different widths"):
        fid(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ConfigError, match="NaN"):
        feature_statistics(np.full((5, 2), np.nan))
