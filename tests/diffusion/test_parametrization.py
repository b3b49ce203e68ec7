"""Round trips between ε, x₀, v and score predictions; EDM preconditioning identities; the guided denoiser."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.core.errors import ConfigError
from gm_jax.diffusion import gmm as G
from gm_jax.diffusion import parametrization as P


@pytest.mark.parametrize("alpha,sigma", [(0.8, 0.6), (1.0, 3.0), (0.3, 0.2)])
def test_round_trips(alpha, sigma):
    k1, k2 = jax.random.split(jax.random.key(0))
    x0 = jax.random.normal(k1, (4, 3))
    eps = jax.random.normal(k2, (4, 3))
    x = alpha * x0 + sigma * eps
    for kind in ("eps", "x0", "v", "score"):
        pred = P.from_x0(kind, x0, x, alpha, sigma)
        np.testing.assert_allclose(P.to_x0(kind, pred, x, alpha, sigma), x0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(P.from_x0("eps", x0, x, alpha, sigma), eps, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(P.from_x0("v", x0, x, alpha, sigma), alpha * eps - sigma * x0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(P.eps_to_score(eps, sigma), P.from_x0("score", x0, x, alpha, sigma), rtol=1e-4)


def test_tweedie_matches_mixture_score_by_finite_differences():
    mix = G.gaussian_mixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.5]], [np.eye(2) * 0.3, np.eye(2) * 0.2])
    x = jnp.array([[0.2, -0.1], [1.5, 0.3]])
    alpha, sigma = 0.7, 0.5
    grad = jax.vmap(jax.grad(lambda u: G.log_prob(G.noised(mix, alpha, sigma), u[None])[0]))(x)
    np.testing.assert_allclose(G.noised_score(mix, x, alpha, sigma), grad, rtol=1e-4, atol=1e-5)
    x0 = G.x0_prediction(mix, x, alpha, sigma)
    np.testing.assert_allclose(P.x0_to_score(x, x0, alpha, sigma), grad, rtol=1e-4, atol=1e-5)


def test_edm_preconditioning_identities():
    """Karras et al. 2022, App. B.6: unit input variance c_in²(σ² + σ_d²) = 1 and unit effective-target
    variance (1 − c_skip)² σ_d² + c_skip² σ² = c_out² for data of variance σ_d²."""
    sigma, sd = jnp.array([0.01, 0.5, 3.0, 80.0]), 0.5
    c_skip, c_out, c_in, c_noise = P.edm_preconditioning(sigma, sd)
    np.testing.assert_allclose(c_in**2 * (sigma**2 + sd**2), 1.0, rtol=1e-5)
    np.testing.assert_allclose((1 - c_skip) ** 2 * sd**2 + c_skip**2 * sigma**2, c_out**2, rtol=1e-4)
    np.testing.assert_allclose(c_noise, 0.25 * np.log(sigma), rtol=1e-5)


def test_guided_denoiser_combines_conditional_and_null():
    """A fake ε-network whose output is label + 0.1 x: guidance is affine in the two predictions."""
    net = lambda x, t, label: x * 0.1 + label[:, None].astype(jnp.float32)
    x = jnp.ones((2, 3))
    label = jnp.array([1, 2])
    alpha, sigma = 0.6, 0.8
    cond = P.make_denoiser("eps", net, label)(x, 0.0, alpha, sigma)
    uncond = P.make_denoiser("eps", net, jnp.array([5, 5]))(x, 0.0, alpha, sigma)
    for w in (0.0, 1.0, 3.0):
        guided = P.make_denoiser("eps", net, label, jnp.float32(w), null_label=5)(x, 0.0, alpha, sigma)
        np.testing.assert_allclose(guided, uncond + w * (cond - uncond), rtol=1e-5, atol=1e-6)
    # guiding x̂₀ equals guiding ε̂ (Ho & Salimans 2022, eq. 6)
    eps_c, eps_u = net(x, 0, label), net(x, 0, jnp.array([5, 5]))
    guided_eps = eps_u + 3.0 * (eps_c - eps_u)
    guided = P.make_denoiser("eps", net, label, 3.0, null_label=5)(x, 0.0, alpha, sigma)
    np.testing.assert_allclose(guided, P.eps_to_x0(x, guided_eps, alpha, sigma), rtol=1e-5, atol=1e-5)


def test_edm_wrapper_formula():
    net = lambda x, t, label: 2.0 * x + t[:, None]
    x, alpha, sigma = jnp.full((2, 3), 0.4), 0.5, 1.5
    d = P.network_x0("edm", net, x, 0.0, alpha, sigma)
    y, s = x / alpha, sigma / alpha
    c_skip, c_out, c_in, c_noise = P.edm_preconditioning(s)
    np.testing.assert_allclose(d, c_skip * y + c_out * (2.0 * c_in * y + c_noise), rtol=1e-5)


def test_unknown_parametrization():
    with pytest.raises(ConfigError, match="unknown parametrization 'epsilon'"):
        P.to_x0("epsilon", jnp.zeros(2), jnp.zeros(2), 1.0, 1.0)
