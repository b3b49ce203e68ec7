"""The sampler zoo (Euler ancestral, EDM's stochastic sampler, DPM-Solver++(2M) SDE, linear multistep) with
exact denoisers: orders of convergence on the Gaussian's closed-form probability-flow solution, reductions
to Euler/Heun/DPM-Solver++(2M), first steps against the papers' formulas, exact NFE, batch independence, and
recovery of a 2-D mixture by the stochastic samplers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.diffusion import gmm as G
from gm_jax.diffusion import samplers as P
from gm_jax.diffusion import schedules as S
from gm_jax.metrics.toy import sliced_wasserstein

S2 = 0.25  # data N(0, s² I), s = 0.5
GAUSS = G.gaussian_mixture(np.array([1.0]), np.zeros((1, 2)), S2 * np.eye(2)[None])
GAUSS_D = G.exact_denoiser(GAUSS)
MIX = G.gaussian_mixture(np.array([0.3, 0.7]), np.array([[-2.0, 0.0], [2.0, 1.0]]),
                         np.array([[[0.3, 0.1], [0.1, 0.2]], [[0.2, 0.0], [0.0, 0.5]]]))
MIX_D = G.exact_denoiser(MIX)
EDM, VP = S.make_sde("edm"), S.make_sde("vp")
MAX_STEPS = 32


@functools.cache
def _runner(name, mixture, **static):
    denoiser = MIX_D if mixture else GAUSS_D
    return jax.jit(lambda key, x, grid, opts, first: P.get_sampler(name)(denoiser, key, x, grid, first, **static,
                                                                         **opts))


def _grid(n, process=EDM, sigma_max=10.0):
    return S.make_grid("edm", process, jnp.int32(n), MAX_STEPS, sigma_max=sigma_max)


def _opts(**kw):
    return {k: jnp.asarray(v, jnp.int32 if isinstance(v, int) else jnp.float32) for k, v in kw.items()}


def _gauss_error(name, n, process=EDM, **opts):
    """Max error against the exact probability-flow solution y_0 = y_T s/√(s² + σ̃_T²) in y = x/α."""
    grid = _grid(n, process)
    x_T = P.prior_sample(jax.random.key(1), grid, (64, 2))
    x, info = _runner(name, False)(jax.random.key(0), x_T, grid, _opts(**opts), jnp.int32(0))
    r_T = grid.sigma[0] / grid.alpha[0]
    exact = x_T / grid.alpha[0] * np.sqrt(S2) / jnp.sqrt(S2 + r_T**2)
    assert int(info["nfe"]) == P.get_sampler(name).expected_nfe(n, **opts)
    return float(jnp.abs(x - exact).max())


@pytest.mark.parametrize("name,opts,low,high", [
    ("euler_ancestral", {"ancestral_eta": 0.0}, 0.9, 1.1),
    ("edm_stochastic", {"s_churn": 0.0}, 1.9, 2.5),
    ("dpmpp_2m_sde", {"ancestral_eta": 0.0}, 1.9, 2.5),
    ("lms", {"lms_order": 1}, 0.9, 1.1),
    ("lms", {"lms_order": 2}, 1.6, 2.2),
    ("lms", {"lms_order": 3}, 2.3, 3.0),
    ("lms", {"lms_order": 4}, 3.0, 3.8),
])
def test_order_of_convergence_on_gaussian(name, opts, low, high):
    """The error shrinks by 2^p from N = 16 to N = 32 steps (EDM's ρ = 7 grid; the multistep start-up at
    lower order keeps LMS-3/4 a bit under 3/4 at these N)."""
    e16, e32 = _gauss_error(name, 16, **opts), _gauss_error(name, 32, **opts)
    assert low < np.log2(e16 / e32) < high, (e16, e32, np.log2(e16 / e32))


def test_lms_error_falls_with_order():
    errs = [_gauss_error("lms", 16, VP, lms_order=o) for o in (1, 2, 3, 4)]
    assert all(b < 0.75 * a for a, b in zip(errs, errs[1:], strict=False)), errs


@pytest.mark.parametrize("name,opts,ref,exact", [
    ("euler_ancestral", {"ancestral_eta": 0.0}, "euler", True),
    ("edm_stochastic", {"s_churn": 0.0}, "heun", True),
    ("edm_stochastic", {"s_tmin": 1e4}, "heun", True),  # γ = 0 outside [S_tmin, S_tmax]
    ("dpmpp_2m_sde", {"ancestral_eta": 0.0}, "dpm_solver_2m", False),
    ("lms", {"lms_order": 1}, "euler", False),
])
def test_noise_free_settings_reduce_to_ode_samplers(name, opts, ref, exact):
    grid = S.make_grid("uniform", VP, jnp.int32(12), MAX_STEPS)
    x_T = P.prior_sample(jax.random.key(1), grid, (32, 2))
    a, ia = _runner(name, True)(jax.random.key(0), x_T, grid, _opts(**opts), jnp.int32(0))
    b, ib = _runner(ref, True)(jax.random.key(3), x_T, grid, {}, jnp.int32(0))
    assert int(ia["nfe"]) == int(ib["nfe"])
    if exact:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    else:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def _first_steps(name, grid, x, steps, **opts):
    chain = P.get_sampler(name).chain(MIX_D, jax.random.key(4), x, grid, 0, **_opts(**opts))
    carry = chain.init
    for k in range(steps):
        carry = chain.step(carry, jnp.int32(k))
    return np.asarray(carry[0], np.float64), int(carry[1])


def _level(grid, k):
    return float(grid.t[k]), float(grid.alpha[k]), float(grid.sigma[k])


def _d(x, k, grid):
    """x̂_0 and σ̃ of grid point k (α ≠ 1: the VP grid)."""
    t, a, s = _level(grid, k)
    return np.asarray(MIX_D(jnp.asarray(x, jnp.float32), t, a, s), np.float64), s / a, a


X_IN = np.array([[0.7, -1.3], [2.5, 0.4], [-3.0, 1.0]], np.float32)


def test_euler_ancestral_first_step_by_hand():
    grid = S.make_grid("uniform", VP, jnp.int32(10), MAX_STEPS)
    x = X_IN * float(grid.sigma[0])
    eta = 0.7
    got, nfe = _first_steps("euler_ancestral", grid, x, 1, ancestral_eta=eta)
    x0, r_s, a_s = _d(x, 0, grid)
    _, a_t, s_t = _level(grid, 1)
    r_t = s_t / a_t
    up = min(r_t, eta * np.sqrt(r_t**2 * (r_s**2 - r_t**2) / r_s**2))
    down = np.sqrt(r_t**2 - up**2)
    y = x / a_s
    z = np.asarray(P._noise(jax.random.key(4), jnp.int32(0), jnp.asarray(x), 0), np.float64)
    want = a_t * (y + (down - r_s) * (y - x0) / r_s + up * z)
    assert nfe == 1 and 0 < up < r_t
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_edm_stochastic_first_step_by_hand():
    """Karras et al. 2022, Alg. 2, lines 4–8 on the EDM process (α = 1, t = σ): churn, Euler, Heun."""
    grid = _grid(10, sigma_max=5.0)
    x = X_IN * 5.0
    churn, noise = 3.0, 1.01
    got, nfe = _first_steps("edm_stochastic", grid, x, 1, s_churn=churn, s_tmin=0.0, s_tmax=100.0, s_noise=noise)
    r0, r1 = float(grid.sigma[0]), float(grid.sigma[1])
    gamma = min(churn / 10, np.sqrt(2) - 1)
    r_hat = r0 * (1 + gamma)
    z = np.asarray(P._noise(jax.random.key(4), jnp.int32(0), jnp.asarray(x), 0), np.float64)
    x_hat = x + np.sqrt(r_hat**2 - r0**2) * noise * z
    den = lambda v, r: np.asarray(MIX_D(jnp.asarray(v, jnp.float32), r, 1.0, r), np.float64)
    d = (x_hat - den(x_hat, r_hat)) / r_hat
    x_e = x_hat + (r1 - r_hat) * d
    d2 = (x_e - den(x_e, r1)) / r1
    want = x_hat + (r1 - r_hat) * 0.5 * (d + d2)
    assert nfe == 2 and gamma == pytest.approx(0.3)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_dpmpp_2m_sde_two_steps_by_hand():
    """Step 0 is first order, step 1 has the midpoint correction (x̂_0 − x̂_0,prev)/(2r) (Lu et al. 2022b)."""
    grid = S.make_grid("uniform", VP, jnp.int32(10), MAX_STEPS)
    x = X_IN * float(grid.sigma[0])
    eta = 0.6
    got, nfe = _first_steps("dpmpp_2m_sde", grid, x, 2, ancestral_eta=eta)
    key = jax.random.key(4)
    xs, prev, h_prev = x.astype(np.float64), None, None
    for k in range(2):
        x0, r_s, a_s = _d(xs, k, grid)
        _, a_t, s_t = _level(grid, k + 1)
        r_t = s_t / a_t
        h = np.log(r_s / r_t)
        dd = x0 if prev is None else x0 + (h / h_prev) * 0.5 * (x0 - prev)
        z = np.asarray(P._noise(key, jnp.int32(k), jnp.asarray(x), 0), np.float64)
        y = (r_t / r_s) * np.exp(-eta * h) * xs / a_s - np.expm1(-(1 + eta) * h) * dd
        xs = a_t * (y + r_t * np.sqrt(-np.expm1(-2 * eta * h)) * z)
        prev, h_prev = x0, h
    assert nfe == 2
    np.testing.assert_allclose(got, xs, rtol=1e-4, atol=1e-4)


def test_lms_coefficients_integrate_polynomials_exactly():
    """Σ_j c_j p(σ_j) = ∫ p over [σ_0, σ_t] for every polynomial of degree < order (non-uniform nodes)."""
    nodes = jnp.array([1.3, 2.0, 3.1, 5.0])
    r_t = 0.7
    for order in (1, 2, 3, 4):
        c = np.asarray(P.lms_coefficients(nodes, jnp.int32(order), jnp.float32(r_t)), np.float64)
        assert np.all(c[order:] == 0)
        for deg in range(order):
            p = np.polynomial.Polynomial([0.0] * deg + [1.0]).integ()
            np.testing.assert_allclose(c @ np.asarray(nodes, np.float64) ** deg, p(r_t) - p(1.3), rtol=1e-5,
                                       atol=1e-6)
    # AB2 in closed form: c_0 = h + h²/(2(σ_0 − σ_1)), c_1 = −h²/(2(σ_0 − σ_1)), h = σ_t − σ_0
    c = np.asarray(P.lms_coefficients(nodes, jnp.int32(2), jnp.float32(r_t)), np.float64)
    h, gap = r_t - 1.3, 1.3 - 2.0
    np.testing.assert_allclose(c[:2], [h + h**2 / (2 * gap), -(h**2) / (2 * gap)], rtol=1e-5)


def test_lms_second_step_by_hand():
    grid = S.make_grid("uniform", VP, jnp.int32(10), MAX_STEPS)
    x = X_IN * float(grid.sigma[0])
    got, nfe = _first_steps("lms", grid, x, 2, lms_order=4)
    x0, r0, a0 = _d(x, 0, grid)
    d0 = (x / a0 - x0) / r0
    _, a1, s1 = _level(grid, 1)
    y1 = x / a0 + (s1 / a1 - r0) * d0
    x0_1, r1, _ = _d(a1 * y1, 1, grid)
    d1 = (y1 - x0_1) / r1
    _, a2, s2 = _level(grid, 2)
    h, gap = s2 / a2 - r1, r1 - r0
    want = a2 * (y1 + (h + h**2 / (2 * gap)) * d1 - h**2 / (2 * gap) * d0)
    assert nfe == 2
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


STOCHASTIC = [("euler_ancestral", {}), ("edm_stochastic", {"s_tmax": 100.0}), ("dpmpp_2m_sde", {})]


def test_euler_ancestral_eta1_is_ddpm():
    """η = 1: σ_down = σ_t²/σ_s and σ_up² = σ_t²(1 − σ_t²/σ_s²) make the step DDPM's posterior q(x_t | x_s, x̂_0)
    (Ho et al. 2020, eq. 7) in y = x/α; with the same per-example noise the chains agree on any grid."""
    for grid in (S.make_grid("uniform", VP, jnp.int32(12), MAX_STEPS),
                 S.make_grid("discrete", S.discrete_schedule("cosine", 1000), jnp.int32(20), MAX_STEPS)):
        x_T = P.prior_sample(jax.random.key(1), grid, (64, 2))
        a, _ = _runner("euler_ancestral", True)(jax.random.key(0), x_T, grid, _opts(ancestral_eta=1.0), jnp.int32(0))
        b, _ = _runner("ddpm", True)(jax.random.key(0), x_T, grid, {}, jnp.int32(0))
        # float32 chains by two formulas: they agree to ~3e-4 after 20 cosine steps (where the rounding falls
        # moves with XLA's optimization level); a wrong σ_down or σ_up is off by > 1e-2
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name,opts,steps,cov_rtol", [
    ("euler_ancestral", {}, 120, 0.2),  # first order: at 40 steps the variances are ~20 % short (like DDPM)
    ("edm_stochastic", {"s_tmax": 100.0}, 40, 0.2),
    ("dpmpp_2m_sde", {}, 40, 0.2),
])
def test_stochastic_samplers_recover_mixture(name, opts, steps, cov_rtol):
    """Each component's weight, mean and variances (samples assigned to the nearer true mean) on EDM's grid."""
    grid = S.make_grid("edm", EDM, jnp.int32(steps), 128, sigma_max=40.0)
    x_T = P.prior_sample(jax.random.key(1), grid, (2000, 2))
    x, info = _runner(name, True)(jax.random.key(0), x_T, grid, _opts(**opts), jnp.int32(0))
    assert int(info["nfe"]) == P.get_sampler(name).expected_nfe(steps)
    x = np.asarray(x)
    assert np.all(np.isfinite(x))
    right = x[:, 0] > 0
    for part, weight, k in ((x[right], 0.7, 1), (x[~right], 0.3, 0)):
        assert abs(len(part) / len(x) - weight) < 0.04
        np.testing.assert_allclose(part.mean(0), MIX.means[k], atol=0.1)
        np.testing.assert_allclose(np.diag(np.cov(part.T)), np.diag(MIX.covs[k]), rtol=cov_rtol)
    truth = G.sample(MIX, jax.random.key(11), 8000)
    assert float(sliced_wasserstein(jnp.asarray(x), truth, jax.random.key(3), 128)) < 0.2


@pytest.mark.parametrize("name,opts", STOCHASTIC)
def test_stochastic_samples_do_not_depend_on_batch(name, opts):
    grid = _grid(8)
    key = jax.random.key(7)
    run = _runner(name, True)

    def draw(num, first):
        x_T = P.prior_sample(jax.random.fold_in(key, 1), grid, (num, 2), first)
        x, info = run(key, x_T, grid, _opts(**opts), jnp.int32(first))
        assert int(info["nfe"]) == P.get_sampler(name).expected_nfe(8)
        return np.asarray(x)

    big = draw(8, 0)
    np.testing.assert_allclose(draw(3, 5), big[5:], rtol=1e-4, atol=1e-5)
    assert np.abs(draw(3, 4) - big[5:]).max() > 0.1
    other, _ = run(jax.random.key(8), P.prior_sample(jax.random.fold_in(key, 1), grid, (8, 2), 0), grid,
                   _opts(**opts), jnp.int32(0))
    assert np.abs(np.asarray(other) - big).max() > 0.1  # the key matters: noise is drawn


def test_zoo_specs_declare_their_options():
    names = set(P.sampler_names())
    assert {"euler_ancestral", "edm_stochastic", "dpmpp_2m_sde", "lms"} <= names
    assert P.samplers_taking("ancestral_eta") == ("euler_ancestral", "dpmpp_2m_sde", "dpmpp_2s_ancestral",
                                                  "dpmpp_3m_sde")
    assert P.get_sampler("lms").deterministic and not P.get_sampler("edm_stochastic").deterministic
    assert P.get_sampler("edm_stochastic").expected_nfe(10) == 19
    assert P.get_sampler("edm_stochastic").defaults() == {"s_churn": 40.0, "s_tmin": 0.05, "s_tmax": 50.0,
                                                          "s_noise": 1.003}
    from gm_jax.core.errors import ConfigError
    with pytest.raises(ConfigError, match=r"lms_order must be in \[1, 4\]"):
        P.get_sampler("lms").check({"lms_order": 5})
    with pytest.raises(ConfigError, match=r"ancestral_eta must be in \[0, 1\]"):
        P.get_sampler("euler_ancestral").check({"ancestral_eta": -0.1})
