"""ODE solvers, sampling and exact likelihood against closed forms (Gaussian-to-Gaussian problem)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from gm_jax.core import ConfigError
from gm_jax.flow_matching.ode import (
    dopri5_integrate,
    euler_integrate,
    heun_integrate,
    integrate,
    ode_log_likelihood,
    reflow_pairs,
    sample_ode,
)

# Gaussian-to-Gaussian problem, closed forms computed independently of the library.
# Source N(0, I), target N(m, S), independent coupling, linear path x_t = t x1 + (1 - t) x0: x_t is Gaussian
# with mean t m and covariance C_t = t^2 S + (1 - t)^2 I, and the marginal velocity is
# E[x1 - x0 | x_t = x] = m + (t S - (1 - t) I) C_t^{-1} (x - t m).
MEAN = np.array([1.5, -0.5])
COV = np.array([[1.0, 0.6], [0.6, 0.5]])


def marginal_velocity(x, t):
    t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x.shape[0],))[:, None, None]
    eye = jnp.eye(2)
    cov_t = t**2 * COV + (1 - t) ** 2 * eye
    gain = (t * COV - (1 - t) * eye) @ jnp.linalg.inv(cov_t)
    centred = x - t[:, :, 0] * MEAN
    return MEAN + jnp.einsum("bij,bj->bi", gain, centred)


def test_fixed_step_orders_and_dopri5_accuracy():
    f = lambda y, t: y * jnp.cos(t)  # y(t) = exp(sin t)
    exact = np.exp(np.sin(2.0))
    err = lambda solver, n: abs(float(solver(f, jnp.ones(()), 0.0, 2.0, n)[0]) - exact)
    assert 1.7 < err(euler_integrate, 100) / err(euler_integrate, 200) < 2.3  # first order
    assert 3.4 < err(heun_integrate, 50) / err(heun_integrate, 100) < 4.6  # second order
    y, info = dopri5_integrate(f, jnp.ones(()), 0.0, 2.0, rtol=1e-6, atol=1e-6)
    assert abs(float(y) - exact) < 2e-5 and bool(info["reached"])
    assert int(info["nfe"]) == 1 + 6 * int(info["accepted"] + info["rejected"])
    back, _ = dopri5_integrate(f, jnp.asarray(exact, jnp.float32), 2.0, 0.0, rtol=1e-6, atol=1e-6)
    assert abs(float(back) - 1.0) < 2e-5
    _, loose = dopri5_integrate(f, jnp.ones(()), 0.0, 2.0, rtol=1e-3, atol=1e-3)
    assert int(loose["nfe"]) < int(info["nfe"])


def test_step_count_is_an_array_without_recompiling():
    run = jax.jit(lambda n: integrate(lambda y, t: -y, jnp.ones(3), 0.0, 1.0, "heun", n))
    y10, info10 = run(jnp.int32(10))
    y40, info40 = run(jnp.int32(40))
    assert run._cache_size() == 1
    assert int(info10["nfe"]) == 20 and int(info40["nfe"]) == 80
    assert abs(float(y40[0]) - np.exp(-1.0)) < abs(float(y10[0]) - np.exp(-1.0))
    with pytest.raises(ConfigError, match="unknown ODE solver"):
        integrate(lambda y, t: y, jnp.ones(1), 0.0, 1.0, "rk4")


@pytest.mark.parametrize("solver,kwargs,tol", [("dopri5", {"rtol": 1e-6, "atol": 1e-6}, 2e-4),
                                               ("heun", {"num_steps": 100}, 2e-3)])
def test_exact_marginal_velocity_maps_source_to_target_moments(solver, kwargs, tol):
    # The flow of a linear velocity field is affine, x1 = M x0 + c; it pushes N(0, I) to N(c, M M^T).
    points = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    mapped, _ = jax.jit(lambda p: sample_ode(marginal_velocity, p, solver=solver, **kwargs))(points)
    c = np.asarray(mapped[0])
    m = np.asarray(mapped[1:] - mapped[0]).T
    np.testing.assert_allclose(c, MEAN, atol=tol)
    np.testing.assert_allclose(m @ m.T, COV, atol=tol)


def test_ode_likelihood_equals_gaussian_log_density():
    x = jnp.array([[1.5, -0.5], [0.0, 0.3], [3.0, 1.0]])
    reference = multivariate_normal(MEAN, COV).logpdf(np.asarray(x, np.float64))
    log_p, info = jax.jit(lambda v: ode_log_likelihood(marginal_velocity, v, solver="dopri5", rtol=1e-6,
                                                       atol=1e-6))(x)
    np.testing.assert_allclose(log_p, reference, atol=2e-3)
    assert int(info["nfe"]) > 7
    # Hutchinson: unbiased; average 512 independent Rademacher probes at one point.
    many = jnp.repeat(x[1:2], 512, axis=0)
    est, _ = jax.jit(lambda v: ode_log_likelihood(marginal_velocity, v, jax.random.key(0), "hutchinson",
                                                  solver="heun", num_steps=100))(many)
    est = np.asarray(est, np.float64)
    assert est.std() > 1e-3  # the estimator is genuinely random (non-diagonal Jacobian)
    assert abs(est.mean() - reference[1]) < 4 * est.std() / np.sqrt(len(est)) + 2e-3
    with pytest.raises(ConfigError, match="PRNG key"):
        ode_log_likelihood(marginal_velocity, x, None, "hutchinson")


def test_reflow_pairs_lower_transport_cost():
    x0 = jax.random.normal(jax.random.key(1), (2000, 2))
    pairs_x0, pairs_x1 = jax.jit(lambda v: reflow_pairs(marginal_velocity, v, solver="heun",
                                                        num_steps=50))(x0)
    reflow_cost = float(jnp.mean(jnp.sum((pairs_x1 - pairs_x0) ** 2, axis=1)))
    independent_cost = float(MEAN @ MEAN + np.trace(COV) + 2.0)  # E|x1 - x0|^2 for independent x0, x1
    assert reflow_cost < independent_cost - 1.0
    np.testing.assert_allclose(np.mean(np.asarray(pairs_x1), axis=0), MEAN, atol=0.1)


@pytest.mark.parametrize("weight_grad", ["im2col", "xla"])
def test_divergences_run_through_convolutions_with_a_custom_vjp(weight_grad):
    """The U-Net's convolutions have a custom VJP and so no forward mode; both divergence estimators (flow
    matching's and the diffusion probability-flow ODE's) use reverse mode. For the linear v(x) = K ⋆ x (3x3,
    zero padding) every diagonal Jacobian entry is the centre tap K[1, 1, c, c], so div v = H·W·Σ_c K[1, 1, c, c];
    Hutchinson's zᵀJz is zᵀ(K ⋆ z), computed here through XLA's plain convolution."""
    from gm_jax.diffusion.likelihood import _divergence
    from gm_jax.flow_matching.ode import exact_divergence, hutchinson_divergence
    from gm_jax.nn.im2col import conv2d, same_padding

    k_kernel, k_x, k_z = jax.random.split(jax.random.key(0), 3)
    kernel = jax.random.normal(k_kernel, (3, 3, 2, 2))
    x = jax.random.normal(k_x, (2, 5, 5, 2))
    z = jax.random.rademacher(k_z, x.shape, jnp.float32)
    pad = same_padding((3, 3))
    velocity = lambda v, t: conv2d(v, kernel, pad, weight_grad)  # noqa: E731
    want = 25.0 * float(jnp.trace(kernel[1, 1]))
    np.testing.assert_allclose(exact_divergence(velocity, x, jnp.zeros(())), [want, want], rtol=1e-5)
    quadratic = np.sum(np.asarray(z * conv2d(z, kernel, pad, "autodiff")).reshape(2, -1), axis=1)
    np.testing.assert_allclose(hutchinson_divergence(velocity, x, jnp.zeros(()), z), quadratic, rtol=1e-5)
    drift = lambda v: velocity(v, None)  # noqa: E731
    np.testing.assert_allclose(_divergence(drift, x, None)[1], [want, want], rtol=1e-5)
    np.testing.assert_allclose(_divergence(drift, x, z)[1], quadratic, rtol=1e-5)
