"""Posterior samplers for linear inverse problems y = A x + σ_y ε on the diffusion core.

Each sampler is a chain builder ``(denoiser, key, x_T, grid, op, y, first_index, **options) -> Chain`` run by
:func:`gm_jax.diffusion.samplers.run_chain` as one ``lax.scan`` over the grid (unused steps skipped), with
``denoiser(x, t, alpha, sigma) -> x̂_0`` the unconditional model and ``op`` a
:class:`~gm_jax.diffusion.operators.LinearOperator`. Options and y are arrays: changing them (or the number
of steps) does not recompile. ``info["nfe"]`` counts the denoiser calls made (for DPS each call is a forward
and a backward pass). Noise of step k, draw j of that step, example i comes from
``fold_in(fold_in(fold_in(key, k), j), first_index + i)``, as in the unconditional samplers.

* :func:`repaint` — replacement with resampling (Lugmayr et al. 2022, Alg. 1, jump length 1): masks only.
* :func:`ddnm` — null-space projection x̂_0 ← x̂_0 − A⁺(A x̂_0 − y) inside DDIM (Wang et al. 2023, eq. 13 and
  Alg. 1), for any operator with a pseudo-inverse; noiseless (σ_y = 0) as in their Alg. 1.
* :func:`dps` — diffusion posterior sampling (Chung et al. 2023, Alg. 1): the ancestral step followed by
  x ← x − ζ_k ∇_x ‖y − A x̂_0(x)‖², ζ_k = ζ/‖y − A x̂_0(x)‖ (their App. C.2), per example.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from gm_jax.core.errors import require
from gm_jax.core.rng import per_example_normal
from gm_jax.diffusion.operators import LinearOperator
from gm_jax.diffusion.parametrization import Denoiser
from gm_jax.diffusion.samplers import Chain, ancestral_step, ddim_step, run_chain, start
from gm_jax.diffusion.schedules import Grid, transition_alpha_sigma

Info = dict[str, jax.Array]


def _noise(key: jax.Array, k: jax.Array, j: jax.Array | int, x: jax.Array, first_index: jax.Array | int
           ) -> jax.Array:
    return per_example_normal(jax.random.fold_in(jax.random.fold_in(key, k), j), first_index, x.shape, x.dtype)


def _levels(grid: Grid, k: jax.Array) -> tuple[jax.Array, ...]:
    """(t_k, α_k, σ_k, α_{k+1}, σ_{k+1}) of grid step k."""
    return grid.t[k], grid.alpha[k], grid.sigma[k], grid.alpha[k + 1], grid.sigma[k + 1]


def _check(op: LinearOperator, x_T: jax.Array, y: jax.Array) -> None:
    op.check_input(x_T, "x_T")
    require(tuple(y.shape) == (x_T.shape[0],) + op.y_shape,
            f"y has shape {tuple(y.shape)}, expected [B, {op.y_shape}] = {(x_T.shape[0],) + op.y_shape}; "
            "measure with op.A")


# ----------------------------------------------------------------------------------------------------------
# RePaint: replacement with resampling
# ----------------------------------------------------------------------------------------------------------


def repaint_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, op: LinearOperator,
                  y: jax.Array, first_index: jax.Array | int = 0, resample: jax.Array | int = 0) -> Chain:
    """RePaint (Lugmayr et al. 2022, Alg. 1 with jump length 1, U = ``resample`` + 1): at grid step k,
    x_known = α_{k+1} y + σ_{k+1} ε (forward-noised measurement, eq. 8), x_unknown ~ p(x_{k+1} | x_k)
    (ancestral step, eq. 9), x_{k+1} = m ⊙ x_known + (1 − m) ⊙ x_unknown (eq. 10); then ``resample`` times
    x_k ~ q(x_k | x_{k+1}) = N(α_{k|k+1} x_{k+1}, σ²_{k|k+1} I) and the step again. The step into the clean
    end is not resampled. NFE = N + resample · (N − 1)."""
    mask = op.mask
    require(mask is not None, f"RePaint replaces known pixels and needs a masking operator, got {op.name!r}; "
            "use ddnm or dps")
    _check(op, x_T, y)
    resample = jnp.asarray(resample, jnp.int32)

    def step(carry, k):
        x, nfe, extra = carry
        t_s, a_s, s_s, a_t, s_t = _levels(grid, k)
        a_st, var_st = transition_alpha_sigma(a_s, s_s, a_t, s_t)

        def replace(x_s, j):
            x0 = denoiser(x_s, t_s, a_s, s_s)
            unknown = ancestral_step(x_s, x0, _noise(key, k, 3 * j, x_s, first_index), a_s, s_s, a_t, s_t)
            known = a_t * y + s_t * _noise(key, k, 3 * j + 1, x_s, first_index)
            return mask * known + (1.0 - mask) * unknown

        def jump_back(j, x_s):
            x_t = replace(x_s, j)
            return a_st * x_t + jnp.sqrt(var_st) * _noise(key, k, 3 * j + 2, x_s, first_index)

        n_back = jnp.where(s_t > 0, resample, 0)
        x = lax.fori_loop(0, n_back, jump_back, x)
        return replace(x, n_back), nfe + n_back + 1, extra

    return Chain(start(x_T), step)


def repaint(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, op: LinearOperator, y: jax.Array,
            first_index: jax.Array | int = 0, resample: jax.Array | int = 0) -> tuple[jax.Array, Info]:
    """Run :func:`repaint_chain`; returns (x_0, {"nfe": ...})."""
    return run_chain(repaint_chain(denoiser, key, x_T, grid, op, y, first_index, resample), grid)


# ----------------------------------------------------------------------------------------------------------
# DDNM: range–null-space decomposition inside DDIM
# ----------------------------------------------------------------------------------------------------------


def null_space_projection(op: LinearOperator, x0: jax.Array, y: jax.Array) -> jax.Array:
    """x̂ = A⁺ y + (I − A⁺A) x̂_0 = x̂_0 − A⁺(A x̂_0 − y) (Wang et al. 2023, eq. 13): A x̂ = A A⁺ y, = y when
    y ∈ range(A)."""
    return x0 - op.pinv(op.A(x0) - y)


def ddnm_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, op: LinearOperator, y: jax.Array,
               first_index: jax.Array | int = 0, eta: jax.Array | float = 1.0) -> Chain:
    """DDNM (Wang et al. 2023, Alg. 1): x̂_0 = denoiser(x_k), the null-space projection
    (:func:`null_space_projection`), then the DDIM step with noise scale η (Song et al. 2021a, eq. 12;
    η = 1 is the DDPM posterior step of their Alg. 1). NFE = N."""
    _check(op, x_T, y)
    eta = jnp.asarray(eta, x_T.dtype)

    def step(carry, k):
        x, nfe, extra = carry
        t_s, a_s, s_s, a_t, s_t = _levels(grid, k)
        x0 = null_space_projection(op, denoiser(x, t_s, a_s, s_s), y)
        z = lax.cond(eta > 0, lambda: _noise(key, k, 0, x, first_index), lambda: jnp.zeros_like(x))
        return ddim_step(x, x0, z, a_s, s_s, a_t, s_t, eta), nfe + 1, extra

    return Chain(start(x_T), step)


def ddnm(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, op: LinearOperator, y: jax.Array,
         first_index: jax.Array | int = 0, eta: jax.Array | float = 1.0) -> tuple[jax.Array, Info]:
    """Run :func:`ddnm_chain`; returns (x_0, {"nfe": ...})."""
    return run_chain(ddnm_chain(denoiser, key, x_T, grid, op, y, first_index, eta), grid)


# ----------------------------------------------------------------------------------------------------------
# DPS: measurement-gradient guidance through the denoiser
# ----------------------------------------------------------------------------------------------------------


def _residual_norm(denoiser: Denoiser, op: LinearOperator, y: jax.Array, t: jax.Array, a: jax.Array,
                   s: jax.Array) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    """x ↦ (Σ_i ‖y_i − A x̂_0(x)_i‖, x̂_0(x)): the sum over the batch, so its gradient is per example
    ∇_{x_i} ‖y_i − A x̂_0(x_i)‖ for a denoiser that treats examples independently."""

    def fn(x):
        x0 = denoiser(x, t, a, s)
        r = (y - op.A(x0)).reshape(x.shape[0], -1)
        return jnp.sum(jnp.sqrt(jnp.sum(r**2, -1) + 1e-12)), x0

    return fn


def dps_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, op: LinearOperator, y: jax.Array,
              first_index: jax.Array | int = 0, zeta: jax.Array | float = 1.0) -> Chain:
    """DPS (Chung et al. 2023, Alg. 1, Gaussian noise): x' ~ p(x_{k+1} | x_k, x̂_0) (ancestral step), then
    x_{k+1} = x' − ζ_k ∇_{x_k} ‖y − A x̂_0(x_k)‖² with ζ_k = ζ/‖y − A x̂_0(x_k)‖, i.e. x' − 2ζ ∇‖y − A x̂_0‖.
    NFE = N (each with a backward pass)."""
    _check(op, x_T, y)
    zeta = jnp.asarray(zeta, x_T.dtype)

    def step(carry, k):
        x, nfe, extra = carry
        t_s, a_s, s_s, a_t, s_t = _levels(grid, k)
        grad, x0 = jax.grad(_residual_norm(denoiser, op, y, t_s, a_s, s_s), has_aux=True)(x)
        x_next = ancestral_step(x, x0, _noise(key, k, 0, x, first_index), a_s, s_s, a_t, s_t)
        return x_next - 2.0 * zeta * grad, nfe + 1, extra

    return Chain(start(x_T), step)


def dps(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, op: LinearOperator, y: jax.Array,
        first_index: jax.Array | int = 0, zeta: jax.Array | float = 1.0) -> tuple[jax.Array, Info]:
    """Run :func:`dps_chain`; returns (x_0, {"nfe": ...})."""
    return run_chain(dps_chain(denoiser, key, x_T, grid, op, y, first_index, zeta), grid)


def _repaint_nfe(steps: int, o: Mapping[str, Any]) -> int:
    return steps + int(o.get("resample", 0)) * max(steps - 1, 0)


INVERSE_SAMPLERS: dict[str, tuple[Callable[..., tuple[jax.Array, Info]], Callable[[int, Mapping[str, Any]], int]]]
INVERSE_SAMPLERS = {
    "repaint": (repaint, _repaint_nfe),
    "ddnm": (ddnm, lambda steps, o: steps),
    "dps": (dps, lambda steps, o: steps),
}
"""name -> (sampler, expected NFE ``(steps, options) -> int``)."""


__all__ = ["INVERSE_SAMPLERS", "ddnm", "ddnm_chain", "dps", "dps_chain", "null_space_projection", "repaint",
           "repaint_chain"]
