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
* :func:`ddrm` — denoising diffusion restoration (Kawar et al. 2022, eqs. 7–8): the variational step in the
  operator's SVD basis, with η, η_b and σ_y ≥ 0.
* :func:`pigdm` — pseudoinverse-guided diffusion (Song et al. 2023, eqs. 7–8): the vector–Jacobian product of
  the measurement residual through the denoiser inside a DDIM step, with σ_y ≥ 0.

:data:`INVERSE_SAMPLERS` maps each name to an :class:`InverseSamplerSpec` (the runner, its expected NFE and its
run-time options as :class:`gm_jax.core.Option`); :func:`restore` runs one by name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from gm_jax.core.errors import ConfigError, check_choice, require
from gm_jax.core.options import Option
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


# ----------------------------------------------------------------------------------------------------------
# DDRM: the variational posterior step in the SVD basis of the operator
# ----------------------------------------------------------------------------------------------------------


class Spectrum(NamedTuple):
    """The operator's spectrum in x's shape: ``s`` the singular values, ``s_plus`` = 1/s where A⁺ inverts
    the value (0 where it is zero or dropped by the operator's rcond) and ``observed`` = (s_plus > 0)."""

    s: jax.Array
    s_plus: jax.Array
    observed: jax.Array


def spectrum(op: LinearOperator) -> Spectrum:
    """:class:`Spectrum` of ``op`` through its public SVD functions: Vᵀ A⁺ U 1 = s⁺ ⊙ 1 (A⁺ = V(s⁺ ⊙ Uᵀ ·)), so a
    singular value counts as observed exactly when A⁺ inverts it (s_i · (Vᵀ A⁺ U 1)_i ≈ 1, else ≈ 0)."""
    s = op.singular_values
    roundtrip = op.Vt(op.pinv(op.U(jnp.ones((1,) + op.x_shape, s.dtype))))[0]
    observed = s * roundtrip > 0.5
    return Spectrum(s, jnp.where(observed, 1.0 / jnp.where(observed, s, 1.0), 0.0), observed)


def ddrm_init(op: LinearOperator, x_T: jax.Array, grid: Grid, y_bar: jax.Array, std_y: jax.Array,
              observed: jax.Array) -> jax.Array:
    """x_T of DDRM (Kawar et al. 2022, eq. 7) in the variance-exploding variables x/α, σ̃ = σ/α, reading the
    given x_T as σ_0 z (as :func:`~gm_jax.diffusion.samplers.prior_sample` draws it): in spectral coordinates
    x̄_T = ȳ + √(σ̃_T² − σ_y²/s_i²) z̄ where s_i ≠ 0 and σ̃_T ≥ σ_y/s_i, x̄_T = σ̃_T z̄ elsewhere (the
    reference code treats too-noisy coordinates as missing for the start only)."""
    r0 = grid.sigma[0] / grid.alpha[0]
    z_bar = op.Vt(x_T / grid.sigma[0])
    inside = jnp.logical_and(observed, r0 >= std_y)
    x_bar = jnp.where(inside, y_bar + jnp.sqrt(jnp.maximum(r0**2 - std_y**2, 0.0)) * z_bar, r0 * z_bar)
    return grid.alpha[0] * op.V(x_bar)


def ddrm_update(x_bar: jax.Array, x0_bar: jax.Array, y_bar: jax.Array, std_y: jax.Array, observed: jax.Array,
                r_s: jax.Array, r_t: jax.Array, z: jax.Array, eta: jax.Array, eta_b: jax.Array) -> jax.Array:
    """DDRM's step x̄_t ~ p(x̄_t | x̄_{s}, x̄_θ, y) (Kawar et al. 2022, eq. 8) per spectral coordinate i, in the
    variance-exploding levels σ̃_s > σ̃_t, with σ_y^(i) = σ_y/s_i:
    s_i = 0:             x̄_θ + √(1 − η²) σ̃_t (x̄_s − x̄_θ)/σ̃_s + η σ̃_t z;
    σ̃_t < σ_y^(i):       x̄_θ + √(1 − η²) σ̃_t (ȳ − x̄_θ)/σ_y^(i) + η σ̃_t z;
    σ̃_t ≥ σ_y^(i):       (1 − η_b) x̄_θ + η_b ȳ + √(σ̃_t² − η_b² σ_y^(i)²) z."""
    kept = jnp.sqrt(jnp.maximum(1.0 - eta**2, 0.0)) * r_t
    missing = x0_bar + kept * (x_bar - x0_bar) / r_s + eta * r_t * z
    below = x0_bar + kept * (y_bar - x0_bar) / jnp.where(std_y > 0, std_y, 1.0) + eta * r_t * z
    above = ((1.0 - eta_b) * x0_bar + eta_b * y_bar
             + jnp.sqrt(jnp.maximum(r_t**2 - (eta_b * std_y) ** 2, 0.0)) * z)
    return jnp.where(observed, jnp.where(r_t < std_y, below, above), missing)


def ddrm_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, op: LinearOperator, y: jax.Array,
               first_index: jax.Array | int = 0, eta: jax.Array | float = 0.85, eta_b: jax.Array | float = 1.0,
               sigma_y: jax.Array | float = 0.0) -> Chain:
    """DDRM (Kawar et al. 2022, eqs. 7–8, defaults η = 0.85, η_b = 1 of their experiments): ȳ = Σ⁺ Uᵀ y and
    x̄ = Vᵀ x/α (the operator's SVD, no dense matrices), x_T from :func:`ddrm_init`, then per grid step
    x̂_0 = denoiser(x_k), x̄_θ = Vᵀ x̂_0, :func:`ddrm_update` and x_{k+1} = α_{k+1} V x̄_{k+1}. With σ_y = 0 and
    η_b = 1 the last step returns A x_0 = A A⁺ y (= y for y in range(A)). NFE = N."""
    _check(op, x_T, y)
    eta, eta_b, sigma_y = (jnp.asarray(v, x_T.dtype) for v in (eta, eta_b, sigma_y))
    spec = spectrum(op)
    y_bar = spec.s_plus * op.Ut(y)
    std_y = sigma_y * spec.s_plus

    def step(carry, k):
        x, nfe, extra = carry
        t_s, a_s, s_s, a_t, s_t = _levels(grid, k)
        x0 = denoiser(x, t_s, a_s, s_s)
        z = _noise(key, k, 0, x, first_index)
        x_bar = ddrm_update(op.Vt(x) / a_s, op.Vt(x0), y_bar, std_y, spec.observed, s_s / a_s, s_t / a_t, z,
                            eta, eta_b)
        return a_t * op.V(x_bar), nfe + 1, extra

    return Chain(start(ddrm_init(op, x_T, grid, y_bar, std_y, spec.observed)), step)


def ddrm(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, op: LinearOperator, y: jax.Array,
         first_index: jax.Array | int = 0, eta: jax.Array | float = 0.85, eta_b: jax.Array | float = 1.0,
         sigma_y: jax.Array | float = 0.0) -> tuple[jax.Array, Info]:
    """Run :func:`ddrm_chain`; returns (x_0, {"nfe": ...})."""
    return run_chain(ddrm_chain(denoiser, key, x_T, grid, op, y, first_index, eta, eta_b, sigma_y), grid)


# ----------------------------------------------------------------------------------------------------------
# ΠGDM: pseudoinverse guidance through the denoiser's Jacobian
# ----------------------------------------------------------------------------------------------------------


def pigdm_weights(spec: Spectrum, alpha: jax.Array, sigma: jax.Array, sigma_y: jax.Array) -> jax.Array:
    """The spectral weights w with (σ²/α) Aᵀ (r² A Aᵀ + σ_y² I)⁻¹ v = V(w ⊙ Uᵀ v), r² = σ²/(α² + σ²)
    (Song et al. 2023, eq. 8 and Tweedie's factor σ²/α): w_i = s_i σ² (α² + σ²)/(α (σ² s_i² + σ_y² (α² + σ²)))
    for σ_y > 0, and w_i = s⁺_i (α² + σ²)/α for σ_y = 0 (then (r² A Aᵀ)⁻¹ is the pseudo-inverse: eq. 7,
    A⁺(y − A x̂_0)/r²)."""
    total = alpha**2 + sigma**2
    denom = sigma**2 * spec.s**2 + sigma_y**2 * total
    noisy = jnp.where(denom > 0, spec.s * sigma**2 * total / (alpha * jnp.where(denom > 0, denom, 1.0)), 0.0)
    return jnp.where(sigma_y > 0, noisy, spec.s_plus * total / alpha)


def pigdm_x0(denoiser: Denoiser, op: LinearOperator, spec: Spectrum, y: jax.Array, x: jax.Array, t: jax.Array,
             alpha: jax.Array, sigma: jax.Array, sigma_y: jax.Array) -> jax.Array:
    """The guided x̂_0 of ΠGDM: with the approximation p(x_0 | x_t) ≈ N(x̂_0, r² I), r² = σ²/(α² + σ²),
    ∇_{x_t} log p(y | x_t) ≈ ((y − A x̂_0)ᵀ (r² A Aᵀ + σ_y² I)⁻¹ A ∂x̂_0/∂x_t)ᵀ (Song et al. 2023, eqs. 7–8),
    one vector–Jacobian product through the denoiser, and Tweedie's formula for p(x_t | y):
    x̂_0(x_t, y) = x̂_0 + (σ²/α) ∇_{x_t} log p(y | x_t). Exact for a prior N(μ, I) (then p(x_0 | x_t) is
    N(x̂_0, r² I)); per example for a denoiser that treats examples independently."""
    x0, vjp = jax.vjp(lambda u: denoiser(u, t, alpha, sigma), x)
    w = pigdm_weights(spec, alpha, sigma, sigma_y)
    (guide,) = vjp(op.V(w * op.Ut(y - op.A(x0))))
    return x0 + guide


def pigdm_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, op: LinearOperator,
                y: jax.Array, first_index: jax.Array | int = 0, eta: jax.Array | float = 1.0,
                sigma_y: jax.Array | float = 0.0) -> Chain:
    """ΠGDM (Song et al. 2023): the guided x̂_0(x_k, y) of :func:`pigdm_x0` in the DDIM step with noise scale
    η (Song et al. 2021a, eq. 12), ε̂ = (x_k − α_k x̂_0(x_k, y))/σ_k consistently (so the step follows the
    approximate conditional score). NFE = N (each with a backward pass)."""
    _check(op, x_T, y)
    eta, sigma_y = jnp.asarray(eta, x_T.dtype), jnp.asarray(sigma_y, x_T.dtype)
    spec = spectrum(op)

    def step(carry, k):
        x, nfe, extra = carry
        t_s, a_s, s_s, a_t, s_t = _levels(grid, k)
        x0 = pigdm_x0(denoiser, op, spec, y, x, t_s, a_s, s_s, sigma_y)
        z = lax.cond(eta > 0, lambda: _noise(key, k, 0, x, first_index), lambda: jnp.zeros_like(x))
        return ddim_step(x, x0, z, a_s, s_s, a_t, s_t, eta), nfe + 1, extra

    return Chain(start(x_T), step)


def pigdm(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, op: LinearOperator, y: jax.Array,
          first_index: jax.Array | int = 0, eta: jax.Array | float = 1.0, sigma_y: jax.Array | float = 0.0
          ) -> tuple[jax.Array, Info]:
    """Run :func:`pigdm_chain`; returns (x_0, {"nfe": ...})."""
    return run_chain(pigdm_chain(denoiser, key, x_T, grid, op, y, first_index, eta, sigma_y), grid)


# ----------------------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------------------


class InverseSamplerSpec(NamedTuple):
    """One posterior sampler: ``fn(denoiser, key, x_T, grid, op, y, first_index, **options) -> (x_0, info)``,
    ``nfe(steps, options) -> denoiser calls`` for ``steps`` grid steps, its run-time options (numbers only:
    arrays inside the chain, a change does not recompile) and one line of help."""

    fn: Callable[..., tuple[jax.Array, Info]]
    nfe: Callable[[int, Mapping[str, Any]], int]
    options: tuple[Option, ...] = ()
    help: str = ""

    def defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self.options}

    def reject_unknown(self, method: str, names: Any) -> None:
        """One-line ConfigError for the first option name this method does not take."""
        takes = [o.name for o in self.options]
        for name in names:
            if name not in takes:
                raise ConfigError(f"inverse method {method!r} does not take --{name}; it takes: "
                                  + (", ".join("--" + n for n in takes) or "no options"))

    def check(self, method: str, given: Mapping[str, Any]) -> dict[str, Any]:
        """Host values ``given`` (``None``: not given) range-checked, with the defaults filled in."""
        given = {k: v for k, v in given.items() if v is not None}
        self.reject_unknown(method, given)
        by_name = {o.name: o for o in self.options}
        return {k: by_name[k].check(v) for k, v in {**self.defaults(), **given}.items()}

    def expected_nfe(self, steps: int, **options: Any) -> int:
        return int(self.nfe(int(steps), {**self.defaults(), **options}))


def _repaint_nfe(steps: int, o: Mapping[str, Any]) -> int:
    return steps + int(o.get("resample", 0)) * max(steps - 1, 0)


def _steps(steps: int, o: Mapping[str, Any]) -> int:
    del o
    return steps


def _eta(default: float, what: str) -> Option:
    return Option("eta", "float", f"{what} noise scale η (0: deterministic DDIM, 1: DDPM-like)", default,
                  low=0.0, high=1.0)


SIGMA_Y = Option("sigma_y", "float", "measurement noise std σ_y of y = A x + σ_y ε (0: noiseless)", 0.0, low=0.0)

INVERSE_SAMPLERS: dict[str, InverseSamplerSpec] = {
    "repaint": InverseSamplerSpec(repaint, _repaint_nfe, (
        Option("resample", "int", "RePaint resampling steps per level (U − 1)", 0, low=0),),
        "RePaint, replacement with resampling (Lugmayr et al. 2022), masks only, σ_y = 0"),
    "ddnm": InverseSamplerSpec(ddnm, _steps, (_eta(1.0, "DDNM's DDIM"),),
                               "DDNM null-space projection in DDIM (Wang et al. 2023), σ_y = 0"),
    "dps": InverseSamplerSpec(dps, _steps, (
        Option("zeta", "float", "DPS step size ζ (step ζ/‖y − A x̂_0‖)", 1.0, low=0.0, low_open=True),),
        "diffusion posterior sampling (Chung et al. 2023)"),
    "ddrm": InverseSamplerSpec(ddrm, _steps, (
        _eta(0.85, "DDRM"), Option("eta_b", "float", "DDRM weight η_b of the measurement", 1.0, low=0.0, high=1.0),
        SIGMA_Y), "DDRM in the operator's SVD basis (Kawar et al. 2022)"),
    "pigdm": InverseSamplerSpec(pigdm, _steps, (_eta(1.0, "ΠGDM's DDIM"), SIGMA_Y),
                                "ΠGDM pseudoinverse guidance (Song et al. 2023)"),
}
"""name -> :class:`InverseSamplerSpec`; ``spec[0]`` is the runner and ``spec[1]`` the expected NFE."""

CONDITIONED_METHODS: dict[str, str] = {
    "sr3": "SR3 (Saharia et al. 2022): a model trained on pairs (x, A x) with A⁺y as extra input channels, "
           "sampled with the condition fixed; models with model.condition 'superres' only, no options",
}
"""Restoration methods that are not zero-shot: the model's own conditional network, name -> help."""


def restore(method: str, denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, op: LinearOperator,
            y: jax.Array, first_index: jax.Array | int = 0, **options: Any) -> tuple[jax.Array, Info]:
    """Run the posterior sampler ``method`` of :data:`INVERSE_SAMPLERS` with its defaults for the options not
    given; unknown names raise a one-line ConfigError (values are checked by ``spec.check`` on the host, since
    they may be traced here)."""
    check_choice("inverse method", method, INVERSE_SAMPLERS)
    spec = INVERSE_SAMPLERS[method]
    spec.reject_unknown(method, options)
    return spec.fn(denoiser, key, x_T, grid, op, y, first_index, **{**spec.defaults(), **options})


__all__ = ["CONDITIONED_METHODS", "INVERSE_SAMPLERS", "InverseSamplerSpec", "SIGMA_Y", "Spectrum", "ddnm",
           "ddnm_chain", "ddrm", "ddrm_chain", "ddrm_init", "ddrm_update", "dps", "dps_chain", "null_space_projection",
           "pigdm", "pigdm_chain", "pigdm_weights", "pigdm_x0", "repaint", "repaint_chain", "restore", "spectrum"]
