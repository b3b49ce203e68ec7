"""Closed forms of the VAE losses against scipy, Monte Carlo and a model with an exact posterior."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gm_jax.autoencoders import losses
from gm_jax.metrics.likelihood import iwae_bound as iwae_from_log_weights
from tests.autoencoders import linear_gaussian_toy as toy


def test_gaussian_kl_matches_monte_carlo():
    mean = jnp.array([0.5, -1.0, 2.0])
    logvar = jnp.array([0.3, -1.2, 0.8])

    @jax.jit
    def log_ratio(key):
        z = losses.reparameterize(key, mean, logvar, num_samples=200_000)
        return losses.gaussian_log_likelihood(z, mean, logvar) - losses.standard_normal_log_prob(z)

    log_ratio = log_ratio(jax.random.key(0))
    mc, stderr = float(jnp.mean(log_ratio)), float(jnp.std(log_ratio)) / np.sqrt(log_ratio.shape[0])
    analytic = float(losses.gaussian_kl_standard_normal(mean, logvar))
    assert abs(analytic - mc) < 4 * stderr
    assert float(losses.gaussian_kl_standard_normal(jnp.zeros(4), jnp.zeros(4))) == pytest.approx(0.0)


def test_bernoulli_log_likelihood_matches_scipy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 5, 5, 1)) * 3
    x = (rng.random(logits.shape) > 0.5).astype(np.float64)
    ref = stats.bernoulli(1 / (1 + np.exp(-logits))).logpmf(x).reshape(4, -1).sum(-1)
    got = losses.bernoulli_log_likelihood(jnp.asarray(logits, jnp.float32), jnp.asarray(x, jnp.float32), 3)
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_gaussian_log_likelihood_matches_scipy():
    rng = np.random.default_rng(2)
    x, mean = rng.normal(size=(2, 3, 4, 4, 2))
    logvar = rng.normal(size=(4, 4, 2)) * 0.5  # broadcasts over the batch
    ref = stats.norm(mean, np.exp(0.5 * logvar)).logpdf(x).reshape(3, -1).sum(-1)
    got = losses.gaussian_log_likelihood(*(jnp.asarray(a, jnp.float32) for a in (x, mean, logvar)), 3)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    np.testing.assert_allclose(losses.standard_normal_log_prob(jnp.asarray(x[0, 0, 0], jnp.float32)),
                               stats.norm().logpdf(x[0, 0, 0]).sum(-1), rtol=1e-5)


def test_reparameterized_gradient_matches_closed_form_and_finite_differences():
    # f(z) = Σ a z² + c z: E[f] = Σ a (μ² + σ²) + c μ, dE/dμ = 2aμ + c, dE/dlogσ² = a σ².
    a, c = jnp.array([1.0, 0.5]), jnp.array([-0.3, 2.0])
    mean, logvar = jnp.array([0.7, -0.4]), jnp.array([0.2, -0.5])
    key = jax.random.key(3)

    def objective(mean, logvar):
        z = losses.reparameterize(key, mean, logvar, num_samples=100_000)
        return jnp.mean(jnp.sum(a * z**2 + c * z, axis=-1))

    objective = jax.jit(objective)
    g_mean, g_logvar = jax.jit(jax.grad(objective, argnums=(0, 1)))(mean, logvar)
    np.testing.assert_allclose(g_mean, 2 * a * mean + c, atol=0.03)
    np.testing.assert_allclose(g_logvar, a * jnp.exp(logvar), atol=0.03)
    # The same estimator (common random numbers) differentiated by central differences.
    h = 1e-2
    for i in range(2):
        e = jnp.zeros(2).at[i].set(h)
        fd = (objective(mean + e, logvar) - objective(mean - e, logvar)) / (2 * h)
        assert float(fd) == pytest.approx(float(g_mean[i]), rel=1e-3, abs=1e-3)


def test_iwae_equals_log_marginal_for_exact_posterior():
    # With q = p(z|x) every log weight equals log p(x), so L_k = log p(x) for every draw and every k.
    x = jnp.asarray(toy.sample_x(6, seed=0))
    ref = toy.log_marginal(np.asarray(x, np.float64))
    iw = jax.jit(lambda key, x: losses.iwae_estimates(
        lambda k, x, n: losses.importance_log_weights(k, x, toy.encode_exact, toy.log_likelihood, n), key, x, 7)[0])
    np.testing.assert_allclose(iw(jax.random.key(1), x), ref, rtol=1e-4, atol=1e-4)


def test_elbo_equals_log_marginal_in_expectation_for_exact_posterior():
    # The analytic-KL ELBO equals log p(x) only in expectation over z ~ q.
    x1 = toy.sample_x(1, seed=0)
    x = jnp.asarray(np.repeat(x1, 20_000, axis=0))
    bound, recon, kl = jax.jit(lambda key, x: losses.elbo(key, x, toy.encode_exact, toy.log_likelihood))(
        jax.random.key(0), x)
    np.testing.assert_allclose(bound, recon - kl, rtol=1e-6)
    stderr = float(jnp.std(bound)) / np.sqrt(x.shape[0])
    assert abs(float(jnp.mean(bound)) - toy.log_marginal(x1[0].astype(np.float64))) < 4 * stderr


def test_elbo_gap_is_kl_to_true_posterior():
    # E_q[ELBO] = log p(x) − KL(q ‖ p(z|x)), both Gaussians known in closed form.
    x = jnp.asarray(np.repeat(toy.sample_x(1, seed=4), 20_000, axis=0))
    bound = jax.jit(lambda key, x: losses.elbo(key, x, toy.encode_off, toy.log_likelihood)[0])(
        jax.random.key(5), x)
    mq, lq = (np.asarray(v[0], np.float64) for v in toy.encode_off(x[:1]))
    mp, vp = toy.posterior(np.asarray(x[:1], np.float64))
    vq = np.exp(lq)
    kl = 0.5 * np.sum(vq / vp[0] + (mp[0] - mq) ** 2 / vp[0] - 1 - np.log(vq / vp[0]))
    expected = toy.log_marginal(np.asarray(x[0], np.float64)) - kl
    stderr = float(jnp.std(bound)) / np.sqrt(x.shape[0])
    assert abs(float(jnp.mean(bound)) - expected) < 4 * stderr


def test_iwae_is_above_elbo_and_increases_with_k():
    # Disjoint groups of the same k = 1 + 4 + 32 weights give independent L_1, L_4, L_32 per example;
    # their means over 3000 examples must be ordered beyond a few standard errors and stay below log p(x).
    x = jnp.asarray(toy.sample_x(3000, seed=1))
    ref = float(np.mean(toy.log_marginal(np.asarray(x, np.float64))))
    log_w = jax.jit(lambda key, x: losses.importance_log_weights(key, x, toy.encode_off, toy.log_likelihood,
                                                                 37))(jax.random.key(11), x)
    groups = [log_w[:1], log_w[1:5], log_w[5:]]
    means = [float(jnp.mean(iwae_from_log_weights(g, axis=0))) for g in groups]
    tol = 3 * max(float(jnp.std(iwae_from_log_weights(g, axis=0))) / np.sqrt(x.shape[0]) for g in groups)
    elbo = jax.jit(lambda key, x: losses.elbo(key, x, toy.encode_off, toy.log_likelihood)[0])(
        jax.random.key(1), x)
    assert means[0] == pytest.approx(float(jnp.mean(elbo)), abs=2 * tol)  # L_1 is an ELBO (MC KL)
    assert means[1] > means[0] + tol and means[2] > means[1] + tol
    assert means[2] < ref + tol


def test_iwae_bound_uses_metric_convention():
    x = jnp.asarray(toy.sample_x(5, seed=2))
    lw, got, z = jax.jit(lambda key, x: (
        losses.importance_log_weights(jax.random.fold_in(key, 0), x, toy.encode_off, toy.log_likelihood, 9),
        # one chunk of 9: its log weights use the key fold_in(key, 0)
        losses.iwae_estimates(lambda k, x, n: losses.importance_log_weights(
            k, x, toy.encode_off, toy.log_likelihood, n), key, x, 9)[0],
        losses.reparameterize(jax.random.fold_in(key, 0), *toy.encode_off(x), num_samples=9)))(jax.random.key(0), x)
    assert lw.shape == (9, 5)
    np.testing.assert_allclose(got, iwae_from_log_weights(lw, axis=0), rtol=1e-6)
    # Independent recomputation of the log weights with scipy densities.
    mean, logvar = (np.asarray(v, np.float64) for v in toy.encode_off(x))
    z = np.asarray(z, np.float64)
    xs = np.asarray(x, np.float64)
    ref = (stats.norm(z @ toy.W.T + toy.B, np.sqrt(toy.S2)).logpdf(xs).sum(-1)
           + stats.norm().logpdf(z).sum(-1) - stats.norm(mean, np.exp(0.5 * logvar)).logpdf(z).sum(-1))
    np.testing.assert_allclose(lw, ref, rtol=1e-4, atol=1e-4)


def test_sparsity_penalties():
    codes = jnp.array([[1.0, -2.0], [0.0, 3.0]])
    np.testing.assert_allclose(losses.l1_activity_penalty(codes), [3.0, 3.0])
    act = np.random.default_rng(3).uniform(0.01, 0.99, size=(16, 5))
    rho = 0.05
    ref = sum(stats.entropy([rho, 1 - rho], [r, 1 - r]) for r in act.mean(0))
    got = losses.kl_sparsity_penalty(jnp.asarray(act, jnp.float32), rho)
    assert float(got) == pytest.approx(ref, rel=1e-4)
    assert float(losses.kl_sparsity_penalty(jnp.full((4, 3), rho), rho)) == pytest.approx(0.0, abs=1e-6)


def test_corruptions():
    x = jnp.full((200, 50), 0.7)
    noisy = jax.jit(losses.gaussian_corruption)(jax.random.key(0), x, 0.3)
    noise = np.asarray(noisy - x)
    assert abs(noise.mean()) < 4 * 0.3 / np.sqrt(noise.size)
    assert noise.std() == pytest.approx(0.3, rel=0.03)
    p = 0.25
    masked = np.asarray(jax.jit(losses.masking_corruption)(jax.random.key(1), x, p, -1.0))
    frac = np.mean(masked == -1.0)
    assert abs(frac - p) < 4 * np.sqrt(p * (1 - p) / masked.size)
    assert np.all((masked == -1.0) | (masked == np.float32(0.7)))
