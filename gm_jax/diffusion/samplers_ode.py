"""Probability-flow ODE samplers beyond fixed-step Euler/Heun/LMS: restart sampling (Xu et al. 2023) and an
adaptive Dormand–Prince 5(4) solver (Dormand & Prince 1980).

Both work in EDM's scaled variables y = x/α, σ̃ = σ/α (Karras et al. 2022, eq. 4), where the probability-flow
ODE is dy/dσ̃ = (y − x̂_0(y; σ̃))/σ̃, and follow :mod:`gm_jax.diffusion.samplers`: one chain builder plus one
:class:`SamplerSpec` each, numbers as arrays, exact NFE in ``info["nfe"]``, per-example noise. Levels
between grid points get (t, α) from :func:`~gm_jax.diffusion.samplers.level_at`. This module registers its
samplers when imported; :mod:`gm_jax.diffusion.samplers` imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from gm_jax.core.options import Option
from gm_jax.core.runge_kutta import DP_A, DP_B4, DP_B5, DP_C, dopri5_step
from gm_jax.diffusion.parametrization import Denoiser
from gm_jax.diffusion.samplers import (
    Chain,
    SamplerSpec,
    _at,
    _noise,
    _ode_derivative,
    heun_chain,
    level_at,
    register_sampler,
    start,
)
from gm_jax.diffusion.schedules import Grid, transition_alpha_sigma

# ----------------------------------------------------------------------------------------------------------
# Restart sampling
# ----------------------------------------------------------------------------------------------------------

RESTART_RHO = 7.0  # the ρ of the restart interval's own grid (Karras et al. 2022, eq. 5)


def heun_between(denoiser: Denoiser, x: jax.Array, level_s: tuple, level_t: tuple) -> jax.Array:
    """One Heun step of the probability-flow ODE (Karras et al. 2022, Alg. 1, lines 5–8) between two levels
    (t, α, σ), σ_t > 0 (2 denoiser calls): y' = y + (σ̃_t − σ̃_s)(d + d')/2."""
    t_t, a_t, s_t = level_t
    y, r_s, d = _ode_derivative(denoiser, x, *level_s)
    r_t = s_t / a_t
    y_euler = y + (r_t - r_s) * d
    _, _, d2 = _ode_derivative(denoiser, a_t * y_euler, t_t, a_t, s_t)
    return a_t * (y + (r_t - r_s) * 0.5 * (d + d2))


def restart_index(grid: Grid, s_min: jax.Array) -> jax.Array:
    """The grid point j where the restarts start: the first noise level 1 ≤ j ≤ N − 1 with σ̃_j ≤ s_min, the
    last noise level N − 1 when none is that low (no restart when N = 1: the returned 0 is never reached)."""
    idx = jnp.arange(grid.max_steps + 1)
    ok = (idx >= 1) & (idx < grid.n_steps) & (grid.sigma / grid.alpha <= s_min)
    return jnp.where(jnp.any(ok), jnp.argmax(ok), grid.n_steps - 1)


def restart_levels(r_hi: jax.Array, r_lo: jax.Array, m: jax.Array, n: jax.Array) -> jax.Array:
    """σ̃ of point m of the restart interval's grid: ρ-spaced from r_hi (m = 0) to r_lo (m = n)
    (Karras et al. 2022, eq. 5, ρ = 7)."""
    frac = m.astype(r_hi.dtype) / n.astype(r_hi.dtype)
    return (r_hi ** (1 / RESTART_RHO) + frac * (r_lo ** (1 / RESTART_RHO) - r_hi ** (1 / RESTART_RHO))) ** RESTART_RHO


def restart_loop(denoiser: Denoiser, key: jax.Array, x: jax.Array, grid: Grid, k: jax.Array, j: jax.Array,
                 first_index: jax.Array | int, opts: tuple) -> jax.Array:
    """K restarts at grid point j (Xu et al. 2023, Alg. 1): noise x_j forward to σ̃_max by the exact
    transition q(x_max | x_j) = N(α_{max|j} x_j, σ²_{max|j}) (Kingma et al. 2021, eq. 27; in y = x/α:
    y + √(σ̃_max² − σ̃_j²) z), then ``n`` Heun steps back to point j on the ρ-spaced levels
    (:func:`restart_levels`). ``opts`` = (K, n, s_max); σ̃_max = s_max clamped to [σ̃_j, σ̃_0]. Restart r draws
    the noise of (key, grid step k, r, example)."""
    n_restart, n_sub, s_max = opts
    level_j = _at(grid, j)
    r_j = level_j[2] / level_j[1]
    r_hi = jnp.clip(s_max, r_j, grid.sigma[0] / grid.alpha[0]).astype(r_j.dtype)
    level_hi = level_at(grid, r_hi)

    def sub_step(m, x_):
        level_s = level_at(grid, restart_levels(r_hi, r_j, m, n_sub))
        level_t = jax.tree.map(lambda a, b: jnp.where(m + 1 == n_sub, a, b), level_j,
                               level_at(grid, restart_levels(r_hi, r_j, m + 1, n_sub)))
        return heun_between(denoiser, x_, level_s, level_t)

    def one_restart(r, x_):
        a_up, var_up = transition_alpha_sigma(level_hi[1], level_hi[2], level_j[1], level_j[2])
        x_hi = a_up * x_ + jnp.sqrt(var_up) * _noise(key, k, x_, first_index, r)
        return lax.fori_loop(0, n_sub, sub_step, x_hi)

    return lax.fori_loop(0, n_restart, one_restart, x)


def restart_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, first_index: jax.Array | int = 0,
                  restart_k: jax.Array | int = 2, restart_steps: jax.Array | int = 3,
                  restart_smin: jax.Array | float = 0.06, restart_smax: jax.Array | float = 0.3) -> Chain:
    """Restart sampling (Xu et al. 2023, Alg. 1): Heun on the probability-flow ODE over the grid
    (:func:`~gm_jax.diffusion.samplers.heun_chain`, 2N − 1 calls); on reaching the restart point j
    (:func:`restart_index`: the first noise level with σ̃ ≤ ``restart_smin``) it runs ``restart_k`` times
    :func:`restart_loop` — forward noise to σ̃ = ``restart_smax``, then ``restart_steps`` Heun steps back
    (2 calls each). NFE = 2N − 1 + 2 K n when N ≥ 2 (2N − 1 for N = 1). K = 0 is Heun exactly."""
    dtype = x_T.dtype
    n_restart, n_sub = (jnp.asarray(v, jnp.int32) for v in (restart_k, restart_steps))
    s_min, s_max = (jnp.asarray(v, dtype) for v in (restart_smin, restart_smax))
    heun = heun_chain(denoiser, key, x_T, grid, first_index)
    j = restart_index(grid, s_min)

    def step(carry, k):
        x, nfe, extra = heun.step(carry, k)
        here = jnp.logical_and(k + 1 == j, n_restart > 0)
        x = lax.cond(here, lambda: restart_loop(denoiser, key, x, grid, k, j, first_index, (n_restart, n_sub, s_max)),
                     lambda: x)
        return x, nfe + here.astype(jnp.int32) * 2 * n_restart * n_sub, extra

    return Chain(heun.init, step)


def _restart_nfe(steps: int, o: Mapping[str, Any]) -> int:
    return 2 * steps - 1 + (2 * int(o["restart_k"]) * int(o["restart_steps"]) if steps >= 2 else 0)


# ----------------------------------------------------------------------------------------------------------
# Adaptive Dormand–Prince 5(4)
# ----------------------------------------------------------------------------------------------------------

# The Butcher tableau and the single step: gm_jax.core.runge_kutta (shared with gm_jax.flow_matching.ode).
DP_SAFETY, DP_MIN_FACTOR, DP_MAX_FACTOR = 0.9, 0.2, 10.0


def _log_sigma_rhs(denoiser: Denoiser, grid: Grid) -> Any:
    """f(y, u) = dy/du = y − x̂_0(α y; σ̃ = e^u): the probability-flow ODE in u = log σ̃ (Karras et al. 2022,
    eq. 4 times σ̃), the level's (t, α) from :func:`level_at`."""

    def f(y: jax.Array, u: jax.Array) -> jax.Array:
        t, a, s = level_at(grid, jnp.exp(u))
        return y - denoiser(a * y, t, a, s)

    return f


def error_norm(err: jax.Array, y: jax.Array, y_new: jax.Array, rtol: jax.Array, atol: jax.Array) -> jax.Array:
    """max over examples of ‖e/(atol + rtol max(|y|, |y_new|))‖_rms (Hairer et al. 1993, eq. II.4.11, per
    example; the worst example decides, so every example meets the tolerance)."""
    scaled = (err / (atol + rtol * jnp.maximum(jnp.abs(y), jnp.abs(y_new)))) ** 2
    return jnp.sqrt(jnp.max(jnp.mean(scaled.reshape(scaled.shape[0], -1), -1)))


def dopri_interval(f: Any, y: jax.Array, k1: jax.Array, u0: jax.Array, u1: jax.Array, h: jax.Array,
                   attempts: jax.Array, tols: tuple) -> tuple:
    """Adaptive Dormand–Prince from u0 down to u1 < u0 (Hairer et al. 1993, Sec. II.4: accept when the
    :func:`error_norm` is ≤ 1, next |h| = |h| clip(0.9 err^{−1/5}, 0.2, 10)), the step clipped so as to land on
    u1; once ``attempts`` reaches the cap, one last step to u1 without error control. ``tols`` = (rtol,
    atol, cap). Returns (y(u1), k1 at u1, the next |h|, attempts, calls made)."""
    rtol, atol, cap = tols

    def not_done(state):
        u, _, _, _, att = state
        return jnp.logical_and(u > u1, att < cap)

    def body(state, force=False):
        u, y_, k_, h_, att = state
        rest = u - u1
        step_h = jnp.minimum(h_, rest)
        y_new, err, k_new = dopri5_step(f, y_, u, -step_h, k_)
        norm = error_norm(err, y_, y_new, rtol, atol)
        ok = jnp.logical_or(norm <= 1.0, force)
        factor = jnp.clip(DP_SAFETY * jnp.where(norm > 0, norm, 1e-10) ** -0.2, DP_MIN_FACTOR, DP_MAX_FACTOR)
        u_new = jnp.where(step_h >= rest, u1, u - step_h)
        return (jnp.where(ok, u_new, u), jnp.where(ok, y_new, y_), jnp.where(ok, k_new, k_), step_h * factor,
                att + 1)

    start_att = attempts
    state = lax.while_loop(not_done, body, (u0, y, k1, h, attempts))
    forced = state[0] > u1
    state = lax.cond(forced, lambda s: body(s, force=True), lambda s: s, state)
    _, y, k1, h, attempts = state
    return y, k1, h, attempts, 6 * (attempts - start_att)


def dopri5_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, first_index: jax.Array | int = 0,
                 rtol: jax.Array | float = 1e-5, atol: jax.Array | float = 1e-5,
                 max_ode_steps: jax.Array | int = 1000) -> Chain:
    """Adaptive Dormand–Prince 5(4) (Dormand & Prince 1980) on the probability-flow ODE in u = log σ̃
    (:func:`_log_sigma_rhs`), grid point to grid point (:func:`dopri_interval`, the step size carried
    across them, so the grid's points are outputs, not steps: N = 2 is one adaptive solve from σ̃_0 to
    σ̃_{N−1}), then x̂_0 of the last noise level into σ = 0, read off the FSAL derivative (x̂_0 = y − f): no
    extra call. NFE = 1 + 6 × attempted steps (first same as last), reported exactly; ``max_ode_steps``
    caps the attempts (past it each interval is crossed by one uncontrolled step). The first step is the
    first interval (at most 1 in log σ̃). ``extra`` = (f at the current point, the next |h|, attempts)."""
    del key, first_index
    dtype = x_T.dtype
    tols = (jnp.asarray(rtol, dtype), jnp.asarray(atol, dtype), jnp.asarray(max_ode_steps, jnp.int32))
    f = _log_sigma_rhs(denoiser, grid)
    u_of = lambda i: jnp.log(grid.sigma[i] / grid.alpha[i]).astype(dtype)
    h0 = jnp.minimum(u_of(0) - jnp.log(jnp.maximum(grid.sigma[1] / grid.alpha[1], 1e-30)).astype(dtype), 1.0)
    extra = (jnp.zeros_like(x_T), h0, jnp.zeros((), jnp.int32))

    def step(carry, k):
        x, nfe, (k1, h, attempts) = carry
        _, a_s, s_s = _at(grid, k)
        _, a_t, s_t = _at(grid, k + 1)
        y = x / a_s
        k1 = lax.cond(k == 0, lambda: f(y, u_of(0)), lambda: k1)
        nfe = nfe + (k == 0).astype(jnp.int32)
        last = s_t <= 0

        def solve():
            return dopri_interval(f, y, k1, u_of(k), u_of(k + 1), h, attempts, tols)

        y, k1, h, attempts, calls = lax.cond(last, lambda: (y - k1, k1, h, attempts, jnp.zeros((), jnp.int32)), solve)
        return a_t * y, nfe + calls, (k1, h, attempts)

    return Chain(start(x_T, extra), step)


def _dopri_nfe(steps: int, o: Mapping[str, Any]) -> int:
    """The most calls: 1 + 6 × (the cap + one uncontrolled step per interval)."""
    return 1 + 6 * (int(o["max_ode_steps"]) + max(steps - 1, 0))


# ----------------------------------------------------------------------------------------------------------
# Registrations
# ----------------------------------------------------------------------------------------------------------

register_sampler(SamplerSpec(
    "restart", restart_chain, nfe=_restart_nfe,
    help="restart sampling: Heun ODE with K forward-noise restarts of [σ_min, σ_max] (Xu et al. 2023)",
    options=(Option("restart_k", "int", "restart: number K of restarts", 2, low=0),
             Option("restart_steps", "int", "restart: Heun steps per restart", 3, low=1),
             Option("restart_smin", "float", "restart: σ/α where the restarts start (the first grid level below it)",
                    0.06, low=0.0, low_open=True),
             Option("restart_smax", "float", "restart: σ/α the restarts noise up to", 0.3, low=0.0, low_open=True))))
register_sampler(SamplerSpec(
    "dopri5", dopri5_chain, deterministic=True, adaptive=True, nfe=_dopri_nfe,
    help="adaptive Dormand–Prince 5(4) on the probability-flow ODE in log σ/α (Dormand & Prince 1980)",
    options=(Option("rtol", "float", "relative tolerance of the adaptive ODE solver", 1e-5, low=0.0, low_open=True),
             Option("atol", "float", "absolute tolerance of the adaptive ODE solver", 1e-5, low=0.0, low_open=True),
             Option("max_ode_steps", "int", "adaptive ODE solver: most attempted steps", 1000, low=1))))


__all__ = ["DP_A", "DP_B4", "DP_B5", "DP_C", "dopri5_chain", "dopri5_step", "dopri_interval", "error_norm",
           "heun_between", "restart_chain", "restart_index", "restart_levels", "restart_loop"]
