"""Mode coverage on 8/25-Gaussian layouts and the class histogram, against brute-force numpy."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial.distance import cdist

from gm_jax.gan.diagnostics import class_histogram, grid_centres, mode_coverage, ring_centres


def test_centre_layouts():
    ring = np.asarray(ring_centres(8, 2.0))
    np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 2.0, rtol=1e-6)
    np.testing.assert_allclose(ring[2], [0.0, 2.0], atol=1e-6)
    grid = {tuple(np.round(c, 5)) for c in np.asarray(grid_centres(5, 2.0))}
    assert grid == set(itertools.product([-4.0, -2.0, 0.0, 2.0, 4.0], repeat=2))


def test_mode_coverage_extremes():
    centres = ring_centres(8, 2.0)
    exact = jnp.repeat(centres, 3, axis=0)
    cov = mode_coverage(exact, centres, 0.05, min_count=3)
    assert int(cov.modes_covered) == 8 and float(cov.high_quality_fraction) == 1.0
    collapsed = jnp.tile(centres[5], (40, 1)) + 0.01
    cov = mode_coverage(collapsed, centres, 0.05, min_count=3)
    assert int(cov.modes_covered) == 1 and int(cov.counts[5]) == 40
    cov = mode_coverage(jnp.zeros((10, 2)), centres, 0.05)
    assert int(cov.modes_covered) == 0 and float(cov.high_quality_fraction) == 0.0


def test_mode_coverage_matches_brute_force():
    centres = grid_centres(5, 2.0)
    samples = jax.random.uniform(jax.random.key(0), (500, 2), minval=-5, maxval=5)
    cov = mode_coverage(samples, centres, 0.2, min_count=2)
    d = cdist(np.asarray(samples), np.asarray(centres))
    good = d.min(axis=1) < 0.6
    counts = np.bincount(d.argmin(axis=1)[good], minlength=25)
    np.testing.assert_array_equal(cov.counts, counts)
    assert int(cov.modes_covered) == int(np.sum(counts >= 2))
    np.testing.assert_allclose(cov.high_quality_fraction, good.mean(), rtol=1e-6)


def test_class_histogram():
    probs = jax.nn.one_hot(jnp.array([0, 0, 1, 2]), 4) * 0.7 + 0.075
    hist = class_histogram(probs)
    h = np.array([0.5, 0.25, 0.25, 0.0])
    np.testing.assert_allclose(hist.fractions, h)
    nz = h > 0
    np.testing.assert_allclose(hist.kl_from_uniform, np.sum(h[nz] * np.log(4 * h[nz])), rtol=1e-6)
    assert int(hist.classes_hit) == 3
    balanced = class_histogram(jax.nn.one_hot(jnp.arange(12) % 3, 3))
    np.testing.assert_allclose(balanced.kl_from_uniform, 0.0, atol=1e-7)
    single = class_histogram(jax.nn.one_hot(jnp.zeros(5, int), 6))
    np.testing.assert_allclose(single.kl_from_uniform, np.log(6), rtol=1e-6)
