"""DEIS: the exponential integrator of the probability-flow ODE with ε extrapolated in time, tAB-DEIS of
orders 1–3 (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential Integrator", ICLR).

In the ε form the probability-flow ODE is d(x/α)/dτ = d(σ/α)/dτ · ε(x, τ) (Zhang & Chen 2023: the exponential
integrator of the ε-parametrization, transition Ψ(t, τ) = α_t/α_τ), so from grid point s = t_k to t = t_{k+1}
exactly

    x_t = (α_t/α_s) x_s + α_t ∫_s^t d(σ/α)/dτ · ε(x_τ, τ) dτ.

tAB-DEIS replaces ε(τ) by the Lagrange polynomial in the time t through the last r + 1 evaluations
ε_k, ε_{k−1}, …, ε_{k−r} at t_k, t_{k−1}, …, t_{k−r}: x_t = (α_t/α_s) x_s + α_t Σ_j C_j ε_{k−j} with
C_j = ∫_s^t d(σ/α)/dτ ℓ_j(τ) dτ. With constant ε (r = 0) this is DDIM (η = 0) exactly:
x_t = α_t x̂_0 + σ_t ε.

The grid gives (t, σ/α) at its points only. The coefficients are computed as C_j = ∫ ℓ_j(τ(v)) e^v dv over
v = log(σ/α) (the same integral, substituted σ/α = e^v, whose weight dσ̃/dv = e^v is exact), by
:data:`DEIS_QUADRATURE`-point Gauss–Legendre quadrature inside the compiled program, with τ(v) the cubic
Lagrange interpolant of the grid's t in log σ̃ through the four nearest noise levels (:func:`time_of_level`,
the cubic counterpart of :func:`~gm_jax.diffusion.samplers.level_at`'s linear one; DDPM's integer time
index and the continuous times alike). The interpolant must be of at least second degree: with the linear
map of ``level_at``, ℓ_j(τ(v)) is off by O(h²) between the points and order 3 falls to order 2. C_0 is
taken from Σ_j C_j = σ̃_t − σ̃_s (Σ_j ℓ_j = 1), so only the corrections are quadrature-dependent and order 1
is DDIM to rounding. Orders 1, 2, … at the first steps (warm start, as Adams–Bashforth), and the step into
σ = 0 is x̂_0 of the last noise level (t = 0 there). This module registers its sampler when imported;
:mod:`gm_jax.diffusion.samplers` imports it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gm_jax.core.options import Option
from gm_jax.diffusion.parametrization import Denoiser, x0_to_eps
from gm_jax.diffusion.samplers import Chain, SamplerSpec, _at, register_sampler, start
from gm_jax.diffusion.schedules import Grid

DEIS_MAX_ORDER = 3
DEIS_QUADRATURE = 8  # Gauss–Legendre points of the coefficient integrals
MAP_POINTS = 4  # grid points of the interpolant τ(log σ̃): cubic
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(DEIS_QUADRATURE)


def lagrange_basis(nodes: jax.Array, count: jax.Array, x: jax.Array) -> jax.Array:
    """ℓ_j(x) = Π_{m<count, m≠j} (x − n_m)/(n_j − n_m) for j < count over the first ``count`` of ``nodes``
    [M] at the points ``x`` [Q]; ℓ_j = 0 for j ≥ count (so Σ_j ℓ_j = 1). Returns [Q, M]."""
    j = jnp.arange(nodes.shape[0])
    active = j < count
    use = jnp.logical_and(active[None, :], j[:, None] != j[None, :])  # [j, m]
    denom = jnp.where(use, nodes[:, None] - nodes[None, :], 1.0)
    factor = jnp.where(use[None], (x[:, None, None] - nodes[None, None, :]) / denom[None], 1.0)  # [Q, j, m]
    return jnp.where(active[None, :], jnp.prod(factor, -1), 0.0)


def time_of_level(grid: Grid, k: jax.Array, v: jax.Array) -> jax.Array:
    """τ(v), the grid's time t at log σ̃ = v between points k and k + 1 (both noise levels): the Lagrange
    interpolant of (log σ̃_i, t_i) through the :data:`MAP_POINTS` noise levels nearest that interval
    (i = k − 1 … k + 2, shifted to stay within the noise levels; all of them when there are fewer), so
    τ = t_k at v = log σ̃_k and t_{k+1} at log σ̃_{k+1}. ``v`` [Q]."""
    n = grid.n_steps
    first = jnp.clip(k - (MAP_POINTS // 2 - 1), 0, jnp.maximum(n - MAP_POINTS, 0))
    idx = jnp.minimum(first + jnp.arange(MAP_POINTS), grid.max_steps)
    used = idx < n
    log_r = jnp.log(jnp.where(used, grid.sigma[idx] / grid.alpha[idx], 1.0)).astype(v.dtype)
    basis = lagrange_basis(log_r, jnp.minimum(n, MAP_POINTS), v)
    return basis @ jnp.where(used, grid.t[idx], 0.0).astype(v.dtype)


def deis_coefficients(grid: Grid, k: jax.Array, times: jax.Array, order: jax.Array, dtype: jnp.dtype
                      ) -> jax.Array:
    """C_j = ∫_{t_k}^{t_{k+1}} d(σ/α)/dτ ℓ_j(τ) dτ = ∫_{log σ̃_k}^{log σ̃_{k+1}} ℓ_j(τ(v)) e^v dv for the
    Lagrange basis ℓ_j in t over the ``order`` newest ``times`` [3] (newest first; t_k first), τ(v) from
    :func:`time_of_level`, by Gauss–Legendre quadrature for j ≥ 1 and C_0 = σ̃_{k+1} − σ̃_k − Σ_{j≥1} C_j
    (the exact ∫ e^v dv); C_j = 0 for j ≥ order. Point k + 1 must be a noise level. Returns C [3]."""
    r_s, r_t = (grid.sigma[i] / grid.alpha[i] for i in (k, k + 1))
    v_s, v_t = jnp.log(r_s).astype(dtype), jnp.log(r_t).astype(dtype)
    half = 0.5 * (v_t - v_s)
    v = half * jnp.asarray(_GL_NODES, dtype) + 0.5 * (v_s + v_t)  # [Q]
    basis = lagrange_basis(times.astype(dtype), order, time_of_level(grid, k, v))  # [Q, 3]
    c = half * jnp.sum((jnp.asarray(_GL_WEIGHTS, dtype) * jnp.exp(v))[:, None] * basis, 0)
    c = jnp.where(jnp.arange(times.shape[0]) >= 1, c, 0.0)
    return c.at[0].set((r_t - r_s).astype(dtype) - jnp.sum(c))


def deis_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, first_index: jax.Array | int = 0,
               deis_order: jax.Array | int = 3) -> Chain:
    """tAB-DEIS (Zhang & Chen 2023) of order r + 1 = min(``deis_order``, k + 1) at grid step k:
    ε_k = ε̂(x_k, t_k) (the one denoiser call of the step), then
    x_{k+1} = (α_{k+1}/α_k) x_k + α_{k+1} Σ_{j≤r} C_j ε_{k−j} (:func:`deis_coefficients`); the step into σ = 0
    is x̂_0(x_k). Order 1 is DDIM (η = 0); NFE = steps. ``extra`` = (the last 3 ε, their t), newest first."""
    del key, first_index
    order = jnp.clip(jnp.asarray(deis_order, jnp.int32), 1, DEIS_MAX_ORDER)
    history = (jnp.zeros((DEIS_MAX_ORDER,) + x_T.shape, x_T.dtype), jnp.zeros((DEIS_MAX_ORDER,), x_T.dtype))

    def step(carry, k):
        x, nfe, (eps_hist, t_hist) = carry
        t_s, a_s, s_s = _at(grid, k)
        _, a_t, s_t = _at(grid, k + 1)
        x0 = denoiser(x, t_s, a_s, s_s)
        eps_hist = jnp.concatenate([x0_to_eps(x, x0, a_s, s_s)[None], eps_hist[:-1]], 0)
        t_hist = jnp.concatenate([jnp.reshape(t_s, (1,)).astype(t_hist.dtype), t_hist[:-1]], 0)

        def multistep():
            c = deis_coefficients(grid, k, t_hist, jnp.minimum(order, k + 1), x.dtype)
            return (a_t / a_s) * x + a_t * jnp.tensordot(c, eps_hist, axes=1)

        x_next = lax.cond(s_t <= 0, lambda: a_t * x0, multistep)
        return x_next, nfe + 1, (eps_hist, t_hist)

    return Chain(start(x_T, history), step)


register_sampler(SamplerSpec(
    "deis", deis_chain, deterministic=True,
    help="DEIS: exponential integrator, ε extrapolated in t (tAB-DEIS, Zhang & Chen 2023)",
    options=(Option("deis_order", "int", "DEIS order (Lagrange polynomial of the last order ε in t)", DEIS_MAX_ORDER,
                    low=1, high=DEIS_MAX_ORDER),)))


__all__ = ["DEIS_MAX_ORDER", "DEIS_QUADRATURE", "MAP_POINTS", "deis_chain", "deis_coefficients", "lagrange_basis",
           "time_of_level"]
