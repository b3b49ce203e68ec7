"""Toy 2-D samplers: each matches the definition in its docstring within Monte-Carlo tolerance."""

import jax
import numpy as np
import pytest
from scipy import stats

from gm_jax.data import toy2d

N = 20_000


def sample(sampler, seed=0, num=N, **kwargs):
    return np.asarray(sampler(jax.random.key(seed), num, **kwargs), np.float64)


@pytest.mark.parametrize("name", sorted(toy2d.TOY_SAMPLERS))
def test_shape_dtype_determinism_and_range(name):
    sampler = toy2d.TOY_SAMPLERS[name]
    x = sampler(jax.random.key(3), N)
    assert x.shape == (N, 2) and x.dtype == np.float32
    np.testing.assert_array_equal(x, sampler(jax.random.key(3), N))
    assert not np.array_equal(x, sampler(jax.random.key(4), N))
    low, high = toy2d.TOY_VALUE_RANGES[name]
    inside = np.mean((np.asarray(x) >= low) & (np.asarray(x) <= high))
    assert inside > 0.99


def _mode_assignment(x, centres, std):
    dist = np.linalg.norm(x[:, None, :] - centres[None], axis=-1)
    nearest = dist.argmin(axis=1)
    return nearest, dist.min(axis=1)


@pytest.mark.parametrize("sampler,centres,std", [
    (toy2d.eight_gaussians, toy2d.EIGHT_GAUSSIANS_CENTRES, toy2d.EIGHT_GAUSSIANS_STD),
    (toy2d.twenty_five_gaussians, toy2d.TWENTY_FIVE_GAUSSIANS_CENTRES, toy2d.TWENTY_FIVE_GAUSSIANS_STD),
])
def test_gaussian_mixtures(sampler, centres, std):
    x = sample(sampler)
    k = centres.shape[0]
    nearest, dist = _mode_assignment(x, centres, std)
    # every sample lies near one centre: |x - mu|^2 / std^2 ~ chi2(2), so dist < 6 std for all 20k draws
    assert dist.max() < 6 * std
    # equal weights: each mode holds N/K samples, binomial std sqrt(N p (1 - p))
    counts = np.bincount(nearest, minlength=k)
    assert np.all(np.abs(counts - N / k) < 5 * np.sqrt(N * (1 / k) * (1 - 1 / k)))
    # within-mode spread is std (chi2(2N) for the pooled squared residuals)
    residual = x - centres[nearest]
    np.testing.assert_allclose(residual.std(axis=0), std, rtol=0.03)


def test_mixture_centres_are_the_documented_ones():
    angles = np.arctan2(toy2d.EIGHT_GAUSSIANS_CENTRES[:, 1], toy2d.EIGHT_GAUSSIANS_CENTRES[:, 0])
    np.testing.assert_allclose(np.linalg.norm(toy2d.EIGHT_GAUSSIANS_CENTRES, axis=1), 2.0, rtol=1e-6)
    np.testing.assert_allclose(np.sort(np.mod(angles, 2 * np.pi)), 2 * np.pi * np.arange(8) / 8, atol=1e-6)
    grid = {tuple(c) for c in toy2d.TWENTY_FIVE_GAUSSIANS_CENTRES.tolist()}
    assert grid == {(float(a), float(b)) for a in (-4, -2, 0, 2, 4) for b in (-4, -2, 0, 2, 4)}


def test_mixture_log_density_matches_scipy():
    x = sample(toy2d.eight_gaussians, num=50) + np.random.default_rng(0).normal(0, 0.03, (50, 2))
    std = toy2d.EIGHT_GAUSSIANS_STD
    ours = np.asarray(toy2d.gaussian_mixture_log_density(jax.numpy.asarray(x, jax.numpy.float32),
                                                         toy2d.EIGHT_GAUSSIANS_CENTRES, std))
    dens = np.mean([stats.multivariate_normal(c, std**2 * np.eye(2)).pdf(x)
                    for c in toy2d.EIGHT_GAUSSIANS_CENTRES.astype(np.float64)], axis=0)
    np.testing.assert_allclose(ours, np.log(dens), rtol=1e-4, atol=1e-3)


def test_two_moons():
    clean = sample(toy2d.two_moons, noise=0.0)
    on_upper = np.isclose(np.linalg.norm(clean, axis=1), 1.0, atol=1e-5) & (clean[:, 1] >= -1e-6)
    on_lower = np.isclose(np.linalg.norm(clean - [1.0, 0.5], axis=1), 1.0, atol=1e-5) & (clean[:, 1] <= 0.5 + 1e-6)
    assert np.all(on_upper | on_lower)
    assert abs(on_upper.mean() - 0.5) < 5 * np.sqrt(0.25 / N)
    # mean: upper (0, 2/pi), lower (1, 0.5 - 2/pi) -> (0.5, 0.25); noise has mean 0
    noisy = sample(toy2d.two_moons, seed=1)
    np.testing.assert_allclose(noisy.mean(axis=0), [0.5, 0.25], atol=0.03)


def test_swiss_roll():
    clean = sample(toy2d.swiss_roll, noise=0.0)
    radius = np.linalg.norm(clean, axis=1)  # = t / 5 with t ~ U[1.5 pi, 4.5 pi]
    t = 5 * radius
    np.testing.assert_allclose(clean, np.stack([t * np.cos(t), t * np.sin(t)], 1) / 5, atol=2e-4)
    assert stats.kstest(t, stats.uniform(1.5 * np.pi, 3 * np.pi).cdf).pvalue > 1e-3
    noisy = sample(toy2d.swiss_roll)
    np.testing.assert_allclose((noisy - clean).std(axis=0), 0.05, rtol=0.05)  # same key -> same t


def test_checkerboard():
    x = sample(toy2d.checkerboard)
    assert np.all((x >= -2) & (x < 2))
    assert np.all((np.floor(x[:, 0]) + np.floor(x[:, 1])) % 2 == 0)
    squares = (np.floor(x[:, 0]) + 2) * 4 + (np.floor(x[:, 1]) + 2)
    counts = np.bincount(squares.astype(int), minlength=16)
    assert np.count_nonzero(counts) == 8
    assert np.all(np.abs(counts[counts > 0] - N / 8) < 5 * np.sqrt(N / 8 * 7 / 8))
    assert stats.kstest(x[:, 0], stats.uniform(-2, 4).cdf).pvalue > 1e-3


def test_rings():
    clean = sample(toy2d.rings, noise=0.0)
    radius = np.linalg.norm(clean, axis=1)
    which = np.abs(radius[:, None] - toy2d.RING_RADII[None]).argmin(axis=1)
    np.testing.assert_allclose(radius, toy2d.RING_RADII[which], atol=1e-5)
    assert np.all(np.abs(np.bincount(which, minlength=4) - N / 4) < 5 * np.sqrt(N * 3 / 16))
    angle = np.mod(np.arctan2(clean[:, 1], clean[:, 0]), 2 * np.pi)
    assert stats.kstest(angle, stats.uniform(0, 2 * np.pi).cdf).pvalue > 1e-3
