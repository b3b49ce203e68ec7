"""Sliced W2 from samples to a Gaussian mixture (gm_jax.bench.exact_w2) against closed forms and an
independent numerical integral of the quantile functions."""

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from gm_jax.bench.exact_w2 import mixture_quantiles_1d, projected_w2_squared, sliced_w2_to_mixture, uniform_directions
from gm_jax.core.errors import GmJaxError

W = np.array([0.4, 0.35, 0.25])
MU = np.array([[-1.0, 0.5], [1.2, -0.3], [0.2, 1.4]])
COV = np.array([[[0.2, 0.05], [0.05, 0.1]], [[0.05, 0.0], [0.0, 0.3]], [[0.1, -0.04], [-0.04, 0.08]]])


def _projected(dirs):
    return dirs @ MU.T, np.sqrt(np.einsum("pd,kde,pe->pk", dirs, COV, dirs))


def test_quantiles_invert_the_mixture_cdf():
    m, s = _projected(uniform_directions(3))
    probs = np.array([1e-5, 0.01, 0.3, 0.5, 0.9, 1 - 1e-5])
    q = mixture_quantiles_1d(W, m, s, probs)
    for j in range(3):
        gap = lambda x, p, j=j: float(np.sum(W * norm.cdf((x - m[j]) / s[j]))) - p
        ref = [brentq(gap, -20, 20, args=(p,), xtol=1e-13) for p in probs]
        np.testing.assert_allclose(q[j], ref, atol=1e-9)


def test_point_mass_closed_form():
    """All samples at c: W2² = E[(θ·X − θ·c)²] = Σ_k π_k (s_k² + (m_k − θ·c)²)."""
    c = np.array([0.3, -0.2])
    dirs = uniform_directions(5)
    m, s = _projected(dirs)
    ref = np.sum(W * (s**2 + (m - (dirs @ c)[:, None]) ** 2), axis=1)
    np.testing.assert_allclose(projected_w2_squared(np.tile(c, (7, 1)), W, MU, COV, dirs), ref, rtol=1e-10)


def test_matches_quantile_integral():
    """W2² = ∫_0^1 (Q_emp(u) − F⁻¹(u))² du by a fine midpoint rule, F⁻¹ of one Gaussian from scipy."""
    x = np.random.default_rng(0).normal(size=(200, 2)) * [0.7, 1.3] + [0.5, 0.0]
    w1, mu1, cov1 = np.ones(1), np.array([[0.1, -0.2]]), np.array([[[0.5, 0.2], [0.2, 0.4]]])
    dirs = uniform_directions(4)
    u = (np.arange(400_000) + 0.5) / 400_000
    ref = []
    for d in dirs:
        q = (d @ mu1[0]) + np.sqrt(d @ cov1[0] @ d) * norm.ppf(u)
        emp = np.sort(x @ d)[np.minimum((u * len(x)).astype(int), len(x) - 1)]
        ref.append(np.mean((emp - q) ** 2))
    np.testing.assert_allclose(projected_w2_squared(x, w1, mu1, cov1, dirs), ref, rtol=2e-4)


def test_sliced_distance_shrinks_with_samples_and_detects_a_shift():
    rng = np.random.default_rng(1)
    dirs = uniform_directions(16)

    def draw(n):
        comp = rng.choice(3, size=n, p=W)
        return MU[comp] + np.einsum("nij,nj->ni", np.linalg.cholesky(COV)[comp], rng.standard_normal((n, 2)))

    small, large = (sliced_w2_to_mixture(draw(n), W, MU, COV, dirs) for n in (200, 20_000))
    shifted = sliced_w2_to_mixture(draw(20_000) + [0.3, 0.0], W, MU, COV, dirs)
    assert large < small < 0.3 and large < 0.05
    # a translation by v moves each projection by θ·v: SW2² ≈ mean_θ (θ·v)² = |v|²/2 in 2-D
    assert shifted == pytest.approx(0.3 / np.sqrt(2), abs=0.03)
    with pytest.raises(GmJaxError):
        sliced_w2_to_mixture(draw(10)[:, :1], W, MU, COV, dirs)
