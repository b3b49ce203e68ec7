"""Goodfellow et al. 2014, Proposition 1 and Theorem 1, on 1-D Gaussians by quadrature."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from gm_jax.gan.theory import (
    criterion_from_jsd,
    gaussian_density,
    jensen_shannon_divergence,
    optimal_discriminator,
    value_function,
    virtual_training_criterion,
)

GRID = jnp.linspace(-30.0, 30.0, 60001)


def test_density_and_optimal_discriminator_closed_form():
    """For N(0, 1) vs N(1, 1), log p_data - log p_g = 1/2 - x, so D*(x) = sigmoid(1/2 - x)."""
    x = np.linspace(-5, 5, 101)
    np.testing.assert_allclose(gaussian_density(jnp.asarray(x), 1.0, 2.0), stats.norm.pdf(x, 1.0, 2.0),
                               rtol=1e-5)
    d_star = optimal_discriminator(gaussian_density(jnp.asarray(x), 0.0, 1.0),
                                   gaussian_density(jnp.asarray(x), 1.0, 1.0))
    np.testing.assert_allclose(d_star, 1 / (1 + np.exp(-(0.5 - x))), rtol=1e-5)


@pytest.mark.parametrize("mean_g,std_g", [(0.0, 1.0), (1.0, 1.0), (0.5, 2.0), (3.0, 0.5)])
def test_criterion_equals_minus_log4_plus_two_jsd(mean_g, std_g):
    p_data, p_g = gaussian_density(GRID, 0.0, 1.0), gaussian_density(GRID, mean_g, std_g)
    c_g = float(virtual_training_criterion(GRID, p_data, p_g))
    np.testing.assert_allclose(c_g, float(criterion_from_jsd(GRID, p_data, p_g)), atol=1e-5)
    # JSD computed independently: scipy's Jensen-Shannon distance (natural log) on the discretised masses.
    dx = float(GRID[1] - GRID[0])
    jsd_scipy = jensenshannon(np.asarray(p_data) * dx, np.asarray(p_g) * dx) ** 2
    np.testing.assert_allclose(float(jensen_shannon_divergence(GRID, p_data, p_g)), jsd_scipy, atol=1e-5)
    np.testing.assert_allclose(c_g, -np.log(4.0) + 2 * jsd_scipy, atol=1e-5)


def test_criterion_extremes():
    """C(G) = -log 4 iff p_g = p_data; with disjoint supports JSD = log 2 and C(G) = 0."""
    p = gaussian_density(GRID, 0.0, 1.0)
    np.testing.assert_allclose(virtual_training_criterion(GRID, p, p), -np.log(4.0), atol=1e-6)
    far = gaussian_density(GRID, 20.0, 1.0)
    np.testing.assert_allclose(virtual_training_criterion(GRID, p, far), 0.0, atol=1e-5)


def test_optimal_discriminator_maximises_value():
    p_data, p_g = gaussian_density(GRID, 0.0, 1.0), gaussian_density(GRID, 1.5, 0.8)
    d_star = optimal_discriminator(p_data, p_g)
    best = float(virtual_training_criterion(GRID, p_data, p_g))
    inner = jnp.abs(GRID) < 3.5  # where 1 - D* does not round to 0 in float32
    np.testing.assert_allclose(value_function(GRID[inner], p_data[inner], p_g[inner], d_star[inner]),
                               virtual_training_criterion(GRID[inner], p_data[inner], p_g[inner]), atol=1e-5)
    for eps in (0.02, -0.05, 0.1):
        other = jnp.clip(d_star + eps * jnp.sin(GRID), 1e-6, 1 - 1e-6)
        assert float(value_function(GRID, p_data, p_g, other)) < best
