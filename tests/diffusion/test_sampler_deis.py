"""tAB-DEIS (Zhang & Chen 2023) with exact denoisers: order 1 is DDIM step for step (float64, discrete and
continuous grids); orders of convergence 1/2/3 on the Gaussian's closed-form probability-flow solution; the
first order-2 step against the coefficient integral by scipy quadrature; higher orders on DDPM's discrete
grid; recovery of the 2-D mixture; the spec."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from gm_jax.diffusion import samplers as P
from gm_jax.diffusion import schedules as S
from gm_jax.diffusion.samplers_deis import MAP_POINTS, deis_coefficients
from tests.diffusion.test_sampler_multistep import (
    EDM,
    MAX_STEPS,
    MIX_D,
    S2,
    VP,
    X_IN,
    _opts,
    _runner,
    gauss_denoiser,
    gauss_error,
    mixture_w2,
)

BETA_MIN, BETA_MAX = VP.beta_min, VP.beta_max


def _f64(grid):
    return jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a, grid)


def _vp64(grid):
    """``grid`` (of the VP SDE) in float64 with α, σ recomputed from its times: α = e^{−∫β/2}, σ² = 1 − α²."""
    time = np.asarray(grid.time, np.float64)
    int_beta = BETA_MIN * time + 0.5 * (BETA_MAX - BETA_MIN) * time**2
    used = np.arange(time.shape[0]) < int(grid.n_steps)
    alpha = np.where(used, np.exp(-0.5 * int_beta), 1.0)
    sigma = np.where(used, np.sqrt(-np.expm1(-int_beta)), 0.0)
    return _f64(grid).replace(t=jnp.asarray(time * used), time=jnp.asarray(time * used), alpha=jnp.asarray(alpha),
                              sigma=jnp.asarray(sigma))


def vp_ratio(tau):
    """σ/α of the VP SDE at time τ: √(e^{∫β} − 1) (Song et al. 2021, eq. 33)."""
    return math.sqrt(math.expm1(BETA_MIN * tau + 0.5 * (BETA_MAX - BETA_MIN) * tau**2))


def vp_ratio_rate(tau):
    """d(σ/α)/dτ = β(τ) e^{∫β}/(2 σ/α)."""
    int_beta = BETA_MIN * tau + 0.5 * (BETA_MAX - BETA_MIN) * tau**2
    return (BETA_MIN + (BETA_MAX - BETA_MIN) * tau) * math.exp(int_beta) / (2.0 * vp_ratio(tau))


@functools.cache
def _stepper(name, denoiser):
    """One compiled grid step of sampler ``name`` with the grid, x_T and the options as arguments."""
    def step(grid, x_T, carry, k, opts):
        return P.get_sampler(name).chain(denoiser, jax.random.key(0), x_T, grid, 0, **opts).step(carry, k)
    return jax.jit(step)


def run_steps(name, grid, x_T, steps, denoiser=MIX_D, **opts):
    """x after each of the first ``steps`` grid steps (call under enable_x64 for float64)."""
    opts = {k: jnp.asarray(v, jnp.int32 if isinstance(v, int) else x_T.dtype) for k, v in opts.items()}
    carry = P.get_sampler(name).chain(denoiser, jax.random.key(0), x_T, grid, 0, **opts).init
    out = []
    for k in range(steps):
        carry = _stepper(name, denoiser)(grid, x_T, carry, jnp.int32(k), opts)
        out.append(np.asarray(carry[0]))
    return out, int(carry[1])


# ---------------------------------------------------------------------------------------------------------
# Order 1 is DDIM
# ---------------------------------------------------------------------------------------------------------


def test_order1_is_ddim_step_for_step():
    """x_t = (α_t/α_s) x_s + α_t (σ̃_t − σ̃_s) ε̂ = α_t x̂_0 + σ_t ε̂ (DDIM, η = 0) at every step, into σ = 0
    included, on DDPM's discrete cosine grid (t = the integer index), the VP SDE's uniform grid and EDM's
    grid, in float64; order 3 starts with the same DDIM step (warm start)."""
    grids = [S.make_grid("discrete", S.discrete_schedule("cosine", 1000), jnp.int32(8), MAX_STEPS),
             S.make_grid("uniform", VP, jnp.int32(8), MAX_STEPS),
             S.make_grid("edm", S.make_sde("edm"), jnp.int32(8), MAX_STEPS, sigma_max=20.0)]
    with jax.enable_x64(True):
        for grid in map(_f64, grids):
            x_T = jnp.asarray(X_IN, jnp.float64) * grid.sigma[0]
            got, nfe = run_steps("deis", grid, x_T, 8, deis_order=1)
            want, _ = run_steps("ddim", grid, x_T, 8, eta=0.0)
            assert nfe == 8
            for a, b in zip(got, want, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * float(np.abs(b).max()))
            third, _ = run_steps("deis", grid, x_T, 2, deis_order=3)
            np.testing.assert_allclose(third[0], want[0], rtol=1e-12, atol=1e-12 * float(np.abs(want[0]).max()))
            assert np.abs(third[1] - want[1]).max() > 1e-6 * np.abs(want[1]).max()  # order 2 from step 1


# ---------------------------------------------------------------------------------------------------------
# Orders of convergence
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order,low,high", [(1, 0.9, 1.1), (2, 1.8, 2.2), (3, 2.65, 3.3)])
def test_order_of_convergence_on_gaussian(order, low, high):
    """Error ratio between 32 and 64 steps on the Gaussian in float64 (t = σ/α on this grid, ρ = 7): 2^p.
    Measured 0.98, 1.90, 2.79 (order 3: 2.57 at 16/32, 2.88 at 64/128, 2.92 at 128/256, the O(h²) of the
    warm start's first DDIM step showing at the finest grids). With level_at's map τ(log σ̃), linear between
    grid points, order 3 gives 2.43 and falls towards 2 (2.16 at 256/512)."""
    e1, e2 = gauss_error("deis", 32, deis_order=order), gauss_error("deis", 64, deis_order=order)
    assert low < np.log2(e1 / e2) < high, (e1, e2, np.log2(e1 / e2))


def test_higher_orders_on_ddpm_discrete_grids():
    """DDPM's β-tables (t = the integer index τ_k): the error at the last noise level against the Gaussian's
    closed-form solution y_{N−1} = y_0 √(s² + σ̃²_{N−1})/√(s² + σ̃_0²) falls with the order at 40 steps.
    Measured (relative): linear 5.5e-2, 8.1e-3, 9.0e-4; cosine 3.4e-2, 2.7e-3, 3.5e-4."""
    with jax.enable_x64(True):
        for name in ("linear", "cosine"):
            grid = _f64(S.make_grid("discrete", S.discrete_schedule(name, 1000), jnp.int32(40), MAX_STEPS))
            r = np.asarray(grid.sigma / grid.alpha)
            x_T = jnp.asarray(np.random.RandomState(1).randn(16, 2)) * grid.sigma[0]
            exact = np.asarray(x_T / grid.alpha[0]) * math.sqrt(S2 + r[39] ** 2) / math.sqrt(S2 + r[0] ** 2)
            errs = []
            for order in (1, 2, 3):
                xs, _ = run_steps("deis", grid, x_T, 39, gauss_denoiser, deis_order=order)
                errs.append(float(np.abs(xs[-1] / float(grid.alpha[39]) - exact).max() / np.abs(exact).max()))
            assert errs[0] < 0.1 and errs[1] < 0.25 * errs[0] and errs[2] < 0.25 * errs[1], (name, errs)


# ---------------------------------------------------------------------------------------------------------
# The first order-2 step by hand
# ---------------------------------------------------------------------------------------------------------


def _quad(f, a, b):
    return integrate.quad(f, a, b, epsabs=0.0, epsrel=1e-12, limit=200)[0]


_coefficients = jax.jit(deis_coefficients, static_argnums=4)


def _order2_coefficients(n):
    """(grid, (t, α, σ), [ℓ_0, ℓ_1] in t through t_1, t_0, the sampler's C [3] of step 1 at order 2) on the VP
    SDE's EDM grid of n steps, σ̃ 4 → 0.05, with the SDE's α, σ in float64."""
    grid = _vp64(S.make_grid("edm", VP, jnp.int32(n), MAX_STEPS, sigma_max=4.0, sigma_min=0.05))
    t, a, s = (np.asarray(v) for v in (grid.t, grid.alpha, grid.sigma))
    ell = [lambda x: (x - t[0]) / (t[1] - t[0]), lambda x: (x - t[1]) / (t[0] - t[1])]
    got = np.asarray(_coefficients(grid, jnp.int32(1), jnp.asarray([t[1], t[0], 0.0]), jnp.int32(2), jnp.float64))
    return grid, (t, a, s), ell, got


def test_first_order2_step_against_quadrature():
    """Step 1 of order 2 on the VP SDE (ε̂ linear in t through t_0, t_1): C_j = ∫_{t_1}^{t_2} d(σ/α)/dτ ℓ_j(τ) dτ
    with ℓ_0 = (τ − t_0)/(t_1 − t_0), ℓ_1 = (τ − t_1)/(t_0 − t_1), by scipy quadrature (i) of the VP SDE's own
    σ/α(τ) (the paper's coefficient; the sampler sees the grid only: measured relative deviation 1.3e-3 at
    10 steps, 8e-5 at 20, O(h⁴) of the cubic map) and (ii) of the sampler's map, t cubic in log σ̃ through grid
    points 0..3 (to 1e-10); C_0 + C_1 = σ̃_2 − σ̃_1 exactly; then x_2 = (α_2/α_1) x_1 + α_2 (C_0 ε̂_1 + C_1 ε̂_0)
    after the DDIM step x_1 = α_1 x̂_0 + σ_1 ε̂_0."""
    assert MAP_POINTS == 4
    with jax.enable_x64(True):
        dev = {}
        for n in (20, 10):
            grid, (t, a, s), ell, got = _order2_coefficients(n)
            r = s / a
            assert got[2] == 0.0
            np.testing.assert_allclose(got[0] + got[1], r[2] - r[1], rtol=1e-13)
            paper = [_quad(lambda x, f=f: vp_ratio_rate(x) * f(x), t[1], t[2]) for f in ell]
            dev[n] = np.abs(got[:2] - paper).max() / np.abs(paper).max()
        assert dev[20] < 3e-4 and dev[10] > 8 * dev[20], dev  # 10 → 20 steps: h/2.1, at least h³
        cubic = np.polynomial.Polynomial.fit(np.log(r[:4]), t[:4], 3)  # τ(v) of the sampler
        own = [_quad(lambda v, j=j: math.exp(v) * ell[j](cubic(v)), math.log(r[1]), math.log(r[2])) for j in (0, 1)]
        np.testing.assert_allclose(got[:2], own, rtol=1e-10)
        assert abs(got[1]) > 0.1 * abs(got[0])

        x_T = jnp.asarray(X_IN, jnp.float64) * grid.sigma[0]
        xs, nfe = run_steps("deis", grid, x_T, 2, deis_order=2)
        eps = lambda x, k: (x - a[k] * np.asarray(MIX_D(jnp.asarray(x), t[k], a[k], s[k]))) / s[k]
        x0 = np.asarray(x_T)
        e0 = eps(x0, 0)
        x1 = a[1] * (x0 - s[0] * e0) / a[0] + s[1] * e0
        e1 = eps(x1, 1)
        x2 = (a[2] / a[1]) * x1 + a[2] * (own[0] * e1 + own[1] * e0)
        assert nfe == 2
        np.testing.assert_allclose(xs[0], x1, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(xs[1], x2, rtol=1e-10, atol=1e-10)
        correction = a[2] * own[1] * (e0 - e1)  # what order 2 adds to DDIM's step
        assert np.abs(correction).max() > 1e-3 * np.abs(x2).max()


# ---------------------------------------------------------------------------------------------------------
# Mixture, spec
# ---------------------------------------------------------------------------------------------------------


def test_recovers_mixture():
    """At 20 steps on EDM's grid (σ_max = 40; t = σ there): within 0.03 of DPM-Solver++(2M) at 40 steps on the
    same x_T in sliced W2 (an ODE sampler is a deterministic map of x_T; see
    test_sampler_multistep.test_recovers_mixture), and at most half DDIM's median distance to the ODE's
    solution (Heun, 64 steps). Measured (test streams): sliced W2 DEIS-3 0.133 (orders 1, 2: 0.120, 0.120), 2M at
    40 0.157, two exact draws 0.035–0.054; median distance to Heun-64 DEIS-3 0.029, DEIS-2 0.049, DDIM 0.115."""
    base = mixture_w2("dpm_solver_2m", 40)
    w2 = mixture_w2("deis", 20)
    assert w2 < min(base + 0.03, 0.2), (w2, base)
    grid = lambda n: S.make_grid("edm", EDM, jnp.int32(n), MAX_STEPS, sigma_max=40.0)
    x_T = P.prior_sample(jax.random.key(1), grid(20), (2000, 2))
    run = lambda name, n, **o: _runner(name, MIX_D)(jax.random.key(0), x_T, grid(n), _opts(**o), jnp.int32(0))[0]
    ref = run("heun", 64)
    dist = lambda x: float(jnp.median(jnp.linalg.norm(x - ref, axis=-1)))
    d_deis, d_ddim = dist(run("deis", 20, deis_order=3)), dist(run("ddim", 20, eta=0.0))
    assert d_deis < 0.5 * d_ddim, (d_deis, d_ddim)


def test_spec():
    from gm_jax.core.errors import ConfigError

    spec = P.get_sampler("deis")
    assert spec.deterministic and not spec.adaptive and spec.static_options == ()
    assert spec.defaults() == {"deis_order": 3}
    assert spec.expected_nfe(7) == 7 and P.samplers_taking("deis_order") == ("deis",)
    with pytest.raises(ConfigError, match=r"deis_order must be in \[1, 3\]"):
        spec.check({"deis_order": 4})
