"""Closed forms of the schedules, SDE marginals against their moment ODEs, grids, q(x_t|x_0) by Monte Carlo
and the posterior against Bayes' rule on Gaussians."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from gm_jax.core.errors import ConfigError
from gm_jax.diffusion import schedules as S


def test_linear_betas_and_cumprod():
    betas = np.asarray(S.linear_betas(1000))
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)
    np.testing.assert_allclose(np.diff(betas), (0.02 - 1e-4) / 999, rtol=1e-3)
    abar = np.asarray(S.discrete_schedule("linear", 1000).alphas_cumprod)
    np.testing.assert_allclose(abar, np.cumprod(1 - betas.astype(np.float64)), rtol=1e-4)
    np.testing.assert_allclose(S.betas_from_alphas_cumprod(jnp.asarray(abar)), betas, rtol=1e-3, atol=1e-7)


def test_cosine_alphas_cumprod_closed_form():
    T, s = 50, 0.008
    f = lambda t: np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2
    expected = f(np.arange(1, T + 1)) / f(0)
    got = np.asarray(S.cosine_alphas_cumprod(T))
    np.testing.assert_allclose(got[:-1], expected[:-1], rtol=1e-4)  # the last β is clipped at 0.999
    assert np.all(np.diff(got) < 0)


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_discrete_tables_match_their_float64_definition(name):
    """β and ᾱ are computed in float64 on the host and cast once: each float32 entry is the float64 value
    of the definition rounded once (relative error <= 2^-24), even where the cosine's f(T) ≈ 0 cancels."""
    T, s = 1000, 0.008
    if name == "cosine":
        f = lambda t: np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2
        abar_def = f(np.arange(T + 1, dtype=np.float64)) / f(0.0)
        betas = np.clip(1.0 - abar_def[1:] / abar_def[:-1], 0.0, 0.999)
    else:
        betas = np.linspace(1e-4, 0.02, T, dtype=np.float64)
    abar = np.cumprod(1.0 - betas)
    sched = S.discrete_schedule(name, T)
    assert sched.betas.dtype == sched.alphas_cumprod.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(sched.betas, np.float64), betas, rtol=2**-23, atol=0)
    np.testing.assert_allclose(np.asarray(sched.alphas_cumprod, np.float64), abar, rtol=2**-23, atol=0)
    if name == "cosine":
        np.testing.assert_allclose(np.asarray(S.cosine_alphas_cumprod(T), np.float64), abar, rtol=2**-23, atol=0)


def test_snr_and_log_snr():
    abar = np.array([0.9, 0.5, 0.01])
    a, s = jnp.sqrt(abar), jnp.sqrt(1 - abar)
    np.testing.assert_allclose(S.snr(a, s), abar / (1 - abar), rtol=1e-5)
    np.testing.assert_allclose(S.log_snr(a, s), np.log(abar / (1 - abar)), rtol=1e-5)


@pytest.mark.parametrize("kind", ["vp", "subvp", "ve", "edm"])
def test_sde_marginal_solves_moment_odes(kind):
    """For dx = f x dt + g dw: d mean/dt = f mean and d var/dt = 2 f var + g² (Särkkä & Solin 2019, eq. 5.51)."""
    sde = S.make_sde(kind)
    t0, t1 = (0.0, 1.0) if kind != "edm" else (0.5, 10.0)
    a0, s0 = (float(v) for v in sde.alpha_sigma(t0))
    coefficients = jax.jit(sde.coefficients)

    def rhs(t, y):
        f, g2 = (float(v) for v in coefficients(t))
        return [f * y[0], 2 * f * y[1] + g2]

    sol = solve_ivp(rhs, (t0, t1), [a0, s0**2], t_eval=np.linspace(t0, t1, 7), rtol=1e-8, atol=1e-10)
    alpha, sigma = (np.asarray(v) for v in sde.alpha_sigma(jnp.asarray(sol.t)))
    np.testing.assert_allclose(alpha, sol.y[0], rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(sigma**2, sol.y[1], rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["vp", "ve", "edm"])
def test_t_from_noise_ratio_inverts(kind):
    sde = S.make_sde(kind)
    t = jnp.array([0.05, 0.3, 0.9]) * sde.T
    a, s = sde.alpha_sigma(t)
    np.testing.assert_allclose(sde.t_from_noise_ratio(s / a), t, rtol=1e-3)


def test_edm_sigmas_formula_and_padding():
    n, rho = 6, 7.0
    i = np.arange(n)
    expected = (80 ** (1 / rho) + i / (n - 1) * (0.002 ** (1 / rho) - 80 ** (1 / rho))) ** rho
    got = np.asarray(S.edm_sigmas(n, 10))
    np.testing.assert_allclose(got[:n], expected, rtol=1e-4)
    assert np.all(got[n:] == 0)


def test_discrete_grid_indices():
    sched = S.discrete_schedule("linear", 20)
    full = S.discrete_grid(sched, 20, 20)
    np.testing.assert_array_equal(np.asarray(full.t[:20]), np.arange(19, -1, -1))
    assert float(full.sigma[20]) == 0 and float(full.alpha[20]) == 1
    one = S.discrete_grid(sched, 1, 20)
    assert float(one.t[0]) == 19 and float(one.sigma[1]) == 0
    # the step count may be traced: one compiled grid builder serves every count
    build = jax.jit(lambda n: S.discrete_grid(sched, n, 20))
    g5 = build(jnp.int32(5))
    np.testing.assert_array_equal(np.asarray(g5.t[:5]), [19, 15, 11, 7, 3])
    build(jnp.int32(7))
    assert build._cache_size() == 1


def test_q_sample_moments_monte_carlo():
    sched = S.discrete_schedule("cosine", 100)
    alpha, sigma = sched.alpha_sigma(40)
    x0 = jnp.array([1.5, -0.5])
    noise = jax.random.normal(jax.random.key(0), (40_000, 2))
    xt = np.asarray(S.q_sample(x0[None], alpha, sigma, noise))
    mean, std = S.q_mean_std(x0, alpha, sigma)
    np.testing.assert_allclose(xt.mean(0), mean, atol=0.02)
    np.testing.assert_allclose(xt.std(0), std, rtol=0.02)


def _bayes_posterior(abar_prev, beta, x0, xt):
    """q(x_{t−1} | x_t, x_0) by conditioning the joint Gaussian of (x_{t−1}, x_t) given x_0."""
    m1, v1 = np.sqrt(abar_prev) * x0, 1 - abar_prev
    a = np.sqrt(1 - beta)
    m2, v2, c12 = a * m1, a**2 * v1 + beta, a * v1
    return m1 + c12 / v2 * (xt - m2), v1 - c12**2 / v2


def test_posterior_matches_bayes_rule():
    sched = S.discrete_schedule("linear", 50)
    abar = np.asarray(sched.alphas_cumprod, np.float64)
    betas = np.asarray(sched.betas, np.float64)
    x0, xt = jnp.array([[0.7]]), jnp.array([[-0.3]])
    for idx in (1, 10, 49):
        mean, var = S.ddpm_posterior(sched, x0, xt, jnp.int32(idx))
        m_ref, v_ref = _bayes_posterior(abar[idx - 1], betas[idx], 0.7, -0.3)
        np.testing.assert_allclose(float(mean[0, 0]), m_ref, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(float(var), v_ref, rtol=1e-4)
        # the (α, σ) form between non-adjacent levels agrees with the same Bayes rule on the two marginals
        a_s, s_s = np.sqrt(abar[idx]), np.sqrt(1 - abar[idx])
        a_t, s_t = np.sqrt(abar[idx - 1]), np.sqrt(1 - abar[idx - 1])
        mean2, var2 = S.posterior_mean_variance(x0, xt, a_s, s_s, a_t, s_t)
        np.testing.assert_allclose(float(mean2[0, 0]), m_ref, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(float(var2), v_ref, rtol=1e-3)
    _, var_beta = S.ddpm_posterior(sched, x0, xt, jnp.int32(10), "beta")
    assert float(var_beta) == pytest.approx(betas[10], rel=1e-5)
    mean1, var1 = S.ddpm_posterior(sched, x0, xt, jnp.int32(0))
    assert float(mean1[0, 0]) == pytest.approx(0.7, abs=1e-4) and float(var1) == 0.0


def test_bad_schedule_input():
    with pytest.raises(ConfigError, match="discrete schedule"):
        S.discrete_schedule("quadratic", 10)
    with pytest.raises(ConfigError, match="sde"):
        S.make_sde("vpp")
    with pytest.raises(ConfigError, match="grid"):
        S.make_grid("karras", S.make_sde("vp"), 10, 10)
    with pytest.raises(ConfigError, match="continuous SDE"):
        S.make_grid("edm", S.discrete_schedule("linear", 10), 5, 10)
    with pytest.raises(ConfigError, match="num_steps"):
        S.linear_betas(0)
