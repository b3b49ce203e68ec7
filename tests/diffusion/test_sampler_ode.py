"""Restart sampling and the adaptive Dormand–Prince 5(4) solver with exact denoisers: Heun's order and the
reduction K = 0 → Heun, the first restart and the first Dormand–Prince step against numpy, error against
tolerance on the Gaussian's closed-form solution, exact/bounded NFE, batch independence and recovery of the
2-D mixture."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gm_jax.diffusion import samplers as P
from gm_jax.diffusion import schedules as S
from tests.diffusion.test_sampler_multistep import (
    EDM,
    MAX_STEPS,
    MIX_D,
    VP,
    X_IN,
    _den,
    _first_steps,
    _opts,
    _runner,
    _z,
    gauss_denoiser,
    gauss_error,
    mixture_w2,
    vp_grid64,
)

# ---------------------------------------------------------------------------------------------------------
# Restart sampling
# ---------------------------------------------------------------------------------------------------------


def test_restart_without_restarts_is_heun():
    grid = S.make_grid("uniform", VP, jnp.int32(12), MAX_STEPS)
    x_T = P.prior_sample(jax.random.key(1), grid, (32, 2))
    a, ia = _runner("restart", MIX_D)(jax.random.key(0), x_T, grid, _opts(restart_k=0), jnp.int32(0))
    b, ib = _runner("heun", MIX_D)(jax.random.key(3), x_T, grid, {}, jnp.int32(0))
    assert int(ia["nfe"]) == int(ib["nfe"]) == 23
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_restart_k0_order_two():
    e1, e2 = gauss_error("restart", 32, (), restart_k=0), gauss_error("restart", 64, (), restart_k=0)
    assert 1.8 < np.log2(e1 / e2) < 2.3, (e1, e2)


def _heun_np(y, r_s, r_t):
    d = (y - _den(y, r_s)) / r_s
    y_e = y + (r_t - r_s) * d
    return y + (r_t - r_s) * 0.5 * (d + (y_e - _den(y_e, r_t)) / r_t)


def test_first_restart_by_hand():
    """Xu et al. 2023, Alg. 1 on the EDM process (α = 1): Heun to the first level σ_j ≤ S_min, then
    x + √(σ_max² − σ_j²) z and Heun on σ_m = (σ_max^{1/7} + m/n (σ_j^{1/7} − σ_max^{1/7}))^7 back to σ_j."""
    grid = S.make_grid("edm", EDM, jnp.int32(6), MAX_STEPS, sigma_max=5.0)
    r = np.asarray(grid.sigma, np.float64)
    s_min, s_max = 0.5 * (r[2] + r[3]), 0.5 * (r[1] + r[2])  # j = 3; σ_max between points 1 and 2
    x = X_IN * 5.0
    got, nfe = _first_steps("restart", grid, x, 3, restart_k=1, restart_steps=2, restart_smin=s_min,
                            restart_smax=s_max)
    y = x.astype(np.float64)
    for k in range(3):
        y = _heun_np(y, r[k], r[k + 1])
    y = y + math.sqrt(s_max**2 - r[3] ** 2) * _z(x, 2, 0)
    levels = [(s_max ** (1 / 7) + m / 2 * (r[3] ** (1 / 7) - s_max ** (1 / 7))) ** 7 for m in range(3)]
    for m in range(2):
        y = _heun_np(y, levels[m], levels[m + 1])
    assert nfe == 6 + 4
    np.testing.assert_allclose(got, y, rtol=2e-4, atol=2e-4)


def test_restart_nfe_and_index():
    spec = P.get_sampler("restart")
    assert spec.expected_nfe(10, restart_k=3, restart_steps=4) == 19 + 24
    assert spec.expected_nfe(1, restart_k=3, restart_steps=4) == 1  # no noise level to restart from
    from gm_jax.diffusion.samplers_ode import restart_index

    grid = S.make_grid("edm", EDM, jnp.int32(10), MAX_STEPS, sigma_max=10.0)
    r = np.asarray(grid.sigma)
    assert int(restart_index(grid, jnp.float32(0.5 * (r[4] + r[5])))) == 5
    assert int(restart_index(grid, jnp.float32(1e-4))) == 9  # below every level: the last noise level
    assert int(restart_index(grid, jnp.float32(100.0))) == 1  # above every level: the first point reached
    for n in (1, 2, 7):
        g = S.make_grid("uniform", VP, jnp.int32(n), MAX_STEPS)
        x_T = P.prior_sample(jax.random.key(1), g, (4, 2))
        _, info = _runner("restart", MIX_D)(jax.random.key(0), x_T, g, _opts(restart_k=2, restart_steps=3),
                                            jnp.int32(0))
        assert int(info["nfe"]) == spec.expected_nfe(n, restart_k=2, restart_steps=3)


def test_restart_samples_do_not_depend_on_batch():
    grid = S.make_grid("edm", EDM, jnp.int32(8), MAX_STEPS, sigma_max=10.0)
    key = jax.random.key(7)
    run = _runner("restart", MIX_D)
    opts = _opts(restart_k=2, restart_steps=2, restart_smin=0.5, restart_smax=2.0)

    def draw(num, first, k=key):
        x_T = P.prior_sample(jax.random.fold_in(key, 1), grid, (num, 2), first)
        return np.asarray(run(k, x_T, grid, opts, jnp.int32(first))[0])

    big = draw(8, 0)
    np.testing.assert_allclose(draw(3, 5), big[5:], rtol=1e-4, atol=1e-5)
    assert np.abs(draw(8, 0, jax.random.key(8)) - big).max() > 0.1  # the restart noise is drawn


def test_restart_recovers_mixture():
    """Measured (test streams): 0.173 at 20 steps, K = 2, 3 steps per restart on [0.06, 0.3]; 2M at 40: 0.157."""
    assert mixture_w2("restart", 20) < min(mixture_w2("dpm_solver_2m", 40) + 0.03, 0.2)


# ---------------------------------------------------------------------------------------------------------
# Adaptive Dormand–Prince 5(4)
# ---------------------------------------------------------------------------------------------------------

# Dormand & Prince 1980 (Hairer et al. 1993, Table II.5.2), written out again for the hand computation
A = [[], [1 / 5], [3 / 40, 9 / 40], [44 / 45, -56 / 15, 32 / 9],
     [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
     [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656]]
C = [0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1]
B5 = [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84]


def test_dopri5_first_step_by_hand():
    """One accepted step (huge tolerances) across the first interval in u = log σ̃: dy/du = y − D(y; e^u)."""
    grid = S.make_grid("edm", EDM, jnp.int32(10), MAX_STEPS, sigma_max=10.0)
    x = X_IN * 10.0
    got, nfe = _first_steps("dopri5", grid, x, 1, rtol=1e6, atol=1e6)
    u0, u1 = math.log(float(grid.sigma[0])), math.log(float(grid.sigma[1]))
    assert u0 - u1 < 1.0  # the first step is the whole first interval
    f = lambda y, u: y - _den(y, math.exp(u))
    h = u1 - u0
    y = x.astype(np.float64)
    ks = []
    for i in range(6):
        ks.append(f(y + h * sum(a * k for a, k in zip(A[i], ks, strict=False)), u0 + C[i] * h))
    want = y + h * sum(b * k for b, k in zip(B5, ks, strict=True))
    assert nfe == 7  # 6 stages + the FSAL derivative at the new point
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)


def test_dopri5_error_follows_tolerance():
    """float64 Gaussian, one interval σ̃ = 10 → 0.01: the global error falls with the tolerance (about
    proportionally: local extrapolation) and the NFE grows like tol^{−1/5} (5th order)."""
    res = {}
    for tol in (1e-4, 1e-6, 1e-8):
        with jax.enable_x64(True):
            grid = vp_grid64(1)
            x_T = jnp.asarray(np.random.RandomState(1).randn(64, 2) * 10.0 * float(grid.alpha[0]))
            x, info = _runner("dopri5", gauss_denoiser)(jax.random.key(0), x_T, grid,
                                                       _opts(jnp.float64, rtol=tol, atol=tol), jnp.int32(0))
            exact = x_T / grid.alpha[0] * np.sqrt(0.25 + 1e-4) / np.sqrt(0.25 + 100.0)
            res[tol] = (float(jnp.abs(x / grid.alpha[1] - exact).max()), int(info["nfe"]))
    errs, nfes = [res[t][0] for t in sorted(res, reverse=True)], [res[t][1] for t in sorted(res, reverse=True)]
    assert errs[0] < 1e-3 and errs[1] < 2e-5 and errs[2] < 5e-7, res
    assert errs[0] > 20 * errs[1] > 400 * errs[2], res
    assert all((n - 1) % 6 == 0 for n in nfes), res
    for a, b in zip(nfes, nfes[1:], strict=False):
        assert 1.5 < b / a < 4.0, res  # 100^{1/5} ≈ 2.5


def test_dopri5_nfe_bound_and_cap():
    spec = P.get_sampler("dopri5")
    assert spec.adaptive and spec.deterministic and not P.get_sampler("unipc").adaptive
    grid = S.make_grid("edm", EDM, jnp.int32(6), MAX_STEPS, sigma_max=10.0)
    x_T = P.prior_sample(jax.random.key(1), grid, (16, 2))
    run = _runner("dopri5", MIX_D)
    _, info = run(jax.random.key(0), x_T, grid, _opts(), jnp.int32(0))
    assert 1 + 6 * 5 <= int(info["nfe"]) <= spec.expected_nfe(6) and (int(info["nfe"]) - 1) % 6 == 0
    # cap 1: the first attempt (rejected at rtol 1e-12), then one uncontrolled step per interval: the bound
    _, info = run(jax.random.key(0), x_T, grid, _opts(rtol=1e-12, atol=1e-12, max_ode_steps=1), jnp.int32(0))
    assert int(info["nfe"]) == spec.expected_nfe(6, max_ode_steps=1) == 1 + 6 * 6
    # one grid step: x̂_0 of the first level, read off the first derivative (one call)
    g1 = S.make_grid("edm", EDM, jnp.int32(1), MAX_STEPS, sigma_max=10.0)
    x, info = run(jax.random.key(0), x_T, g1, _opts(), jnp.int32(0))
    assert int(info["nfe"]) == 1
    np.testing.assert_allclose(np.asarray(x), np.asarray(MIX_D(x_T, g1.t[0], g1.alpha[0], g1.sigma[0])),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("steps", [2, 10])
def test_dopri5_recovers_mixture(steps):
    """One adaptive solve (2 grid points) or through 10 grid points: Heun's solution with 64 steps, and the
    ODE limit in sliced W2 (measured 0.157 in the test streams, as 2M at 40 steps)."""
    grid = S.make_grid("edm", EDM, jnp.int32(steps), MAX_STEPS, sigma_max=40.0)
    x_T = P.prior_sample(jax.random.key(1), grid, (2000, 2))
    x, info = _runner("dopri5", MIX_D)(jax.random.key(0), x_T, grid, _opts(rtol=1e-4, atol=1e-4), jnp.int32(0))
    ref = _runner("heun", MIX_D)(jax.random.key(0), x_T, S.make_grid("edm", EDM, jnp.int32(64), MAX_STEPS,
                                                                      sigma_max=40.0), {}, jnp.int32(0))[0]
    assert int(info["nfe"]) <= P.get_sampler("dopri5").expected_nfe(steps)
    assert float(jnp.median(jnp.abs(x - ref))) < 3e-3  # the same ODE solution up to Heun's error (~1e-3)
    assert mixture_w2("dopri5", steps) < min(mixture_w2("dpm_solver_2m", 40) + 0.03, 0.2)
