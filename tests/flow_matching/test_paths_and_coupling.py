"""Conditional paths (velocity = time derivative of the path) and the exact mini-batch OT coupling."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core import ConfigError
from gm_jax.flow_matching.coupling import ot_assignment, ot_couple
from gm_jax.flow_matching.paths import path_coefficients, sample_path, target_velocity


@pytest.mark.parametrize("path,kwargs", [("linear", {"sigma_min": 0.0}), ("linear", {"sigma_min": 0.1}),
                                         ("vp", {"beta_min": 0.1, "beta_max": 20.0})])
def test_target_velocity_is_time_derivative_of_path(path, kwargs):
    k0, k1, k2 = jax.random.split(jax.random.key(0), 3)
    x0 = jax.random.normal(k0, (5, 3))
    x1 = jax.random.normal(k1, (5, 3)) + 2.0
    t = jax.random.uniform(k2, (5,), minval=0.02, maxval=0.98)
    _, dxt_dt = jax.jvp(lambda s: sample_path(path, s, x0, x1, **kwargs), (t,), (jnp.ones_like(t),))
    np.testing.assert_allclose(target_velocity(path, t, x0, x1, **kwargs), dxt_dt, rtol=2e-4, atol=2e-4)


def test_path_endpoints():
    x0, x1 = jnp.ones((2, 2)), 3.0 * jnp.ones((2, 2))
    np.testing.assert_allclose(sample_path("linear", 0.0, x0, x1), x0)
    np.testing.assert_allclose(sample_path("linear", 1.0, x0, x1, sigma_min=0.1), x1 + 0.1 * x0, rtol=1e-6)
    a, b, _, _ = path_coefficients("vp", jnp.array([0.0, 1.0 - 1e-6]))
    # VP: alpha(1) = exp(-(beta_min + (beta_max - beta_min) / 2) / 2); variance preserved: a^2 + b^2 = 1.
    np.testing.assert_allclose(a[0], np.exp(-0.5 * (0.1 + 9.95)), rtol=1e-5)
    np.testing.assert_allclose(a**2 + b**2, 1.0, rtol=1e-6)
    np.testing.assert_allclose(a[1], 1.0, atol=1e-4)
    with pytest.raises(ConfigError, match="unknown flow matching path"):
        sample_path("cosine", 0.5, x0, x1)


def test_ot_coupling_equals_brute_force():
    k0, k1 = jax.random.split(jax.random.key(3))
    x0 = jax.random.normal(k0, (6, 2))
    x1 = jax.random.normal(k1, (6, 2)) * 2.0 + 1.0
    perm = np.asarray(jax.jit(ot_assignment)(x0, x1))
    a, b = np.asarray(x0, np.float64), np.asarray(x1, np.float64)
    cost = ((a[:, None] - b[None]) ** 2).sum(-1)
    costs = {p: cost[np.arange(6), list(p)].sum() for p in itertools.permutations(range(6))}
    best = min(costs, key=costs.get)
    assert tuple(perm) == best
    np.testing.assert_allclose(cost[np.arange(6), perm].sum(), costs[best], rtol=1e-9)
    _, paired = ot_couple(x0, x1)
    np.testing.assert_allclose(paired, x1[perm])
    with pytest.raises(ConfigError, match="equal shape"):
        ot_assignment(x0, x1[:5])
