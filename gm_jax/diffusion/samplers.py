"""Samplers: pure functions ``(denoiser, key, x_T, grid, **arrays) -> (x_0, info)``.

* ``denoiser(x, t, alpha, sigma) -> x̂_0`` (see :mod:`gm_jax.diffusion.parametrization`); ε̂ and the score
  follow from x̂_0 in closed form, so one network interface serves every sampler.
* ``grid`` is a padded :class:`~gm_jax.diffusion.schedules.Grid` of static length; ``grid.n_steps`` (an
  array) says how many steps run. The chain is one ``lax.scan`` over the static length whose unused steps
  are skipped by ``lax.cond``, so changing the number of steps, η, the SNR or guidance never recompiles.
* ``info["nfe"]`` counts the denoiser calls actually made.
* Noise of step k for example i is drawn from ``fold_in(fold_in(key, k), first_index + i)``, so a sample
  does not depend on the batch it is drawn in. The step into the clean end of the grid adds no noise.
* Nothing here jits or pmaps; the caller does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from gm_jax.core.errors import check_choice, require
from gm_jax.core.rng import per_example_normal
from gm_jax.diffusion.parametrization import Denoiser, x0_to_eps, x0_to_score
from gm_jax.diffusion.schedules import Grid, posterior_mean_variance, transition_alpha_sigma

Info = dict[str, jax.Array]


def _noise(key: jax.Array, k: jax.Array, x: jax.Array, first_index: jax.Array, inner: jax.Array | int = 0
           ) -> jax.Array:
    step = jax.random.fold_in(jax.random.fold_in(key, k), inner)
    return per_example_normal(step, first_index, x.shape, x.dtype)


def _at(grid: Grid, k: jax.Array) -> tuple[jax.Array, ...]:
    return grid.t[k], grid.alpha[k], grid.sigma[k]


def _chain(step: Callable[[Any, jax.Array], Any], carry: Any, grid: Grid) -> Any:
    """Run ``step(carry, k)`` for k < grid.n_steps inside one scan over the static grid length."""

    def body(c, k):
        return lax.cond(k < grid.n_steps, step, lambda c_, k_: c_, c, k), None

    carry, _ = lax.scan(body, carry, jnp.arange(grid.max_steps))
    return carry


def prior_sample(key: jax.Array, grid: Grid, shape: tuple[int, ...], first_index: jax.Array | int = 0
                 ) -> jax.Array:
    """x_T ~ N(0, σ_0² I) at the first grid point (σ_0 ≈ 1 for VP, σ_max for VE), per-example keyed."""
    return grid.sigma[0] * per_example_normal(key, first_index, shape)


# ----------------------------------------------------------------------------------------------------------
# Single steps (pure; shared by several samplers)
# ----------------------------------------------------------------------------------------------------------


def ancestral_step(x: jax.Array, x0: jax.Array, z: jax.Array, alpha_s: jax.Array, sigma_s: jax.Array,
                   alpha_t: jax.Array, sigma_t: jax.Array, variance: str = "posterior") -> jax.Array:
    """x_t ~ q(x_t | x_s, x̂_0): DDPM's ancestral step (Ho et al. 2020, Alg. 2 with eq. 7) for any pair of
    levels (Kingma et al. 2021, eq. 32). ``variance``: 'posterior' σ̃² (β̃_t) or 'forward' σ²_{s|t} (β_t)."""
    mean, var = posterior_mean_variance(x0, x, alpha_s, sigma_s, alpha_t, sigma_t)
    if variance == "forward":
        var = jnp.where(sigma_t > 0, transition_alpha_sigma(alpha_s, sigma_s, alpha_t, sigma_t)[1], 0.0)
    return mean + jnp.sqrt(var) * z


def ddim_step(x: jax.Array, x0: jax.Array, z: jax.Array, alpha_s: jax.Array, sigma_s: jax.Array,
              alpha_t: jax.Array, sigma_t: jax.Array, eta: jax.Array) -> jax.Array:
    """x_t = α_t x̂_0 + √(σ_t² − c²) ε̂ + c z with c = η (σ_t/σ_s) σ_{s|t}; for VP this is
    η √((1−ᾱ_{t−1})/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t−1}) (Song et al. 2021a, eqs. 12 and 16)."""
    eps = x0_to_eps(x, x0, alpha_s, sigma_s)
    _, var_st = transition_alpha_sigma(alpha_s, sigma_s, alpha_t, sigma_t)
    c = eta * sigma_t / sigma_s * jnp.sqrt(var_st)
    return alpha_t * x0 + jnp.sqrt(jnp.maximum(sigma_t**2 - c**2, 0.0)) * eps + c * z


def langevin_step(x: jax.Array, score: jax.Array, z: jax.Array, step_size: jax.Array) -> jax.Array:
    """x ← x + (a/2) ∇log p(x) + √a z (Song & Ermon 2019, Alg. 1, step size a)."""
    return x + 0.5 * step_size * score + jnp.sqrt(step_size) * z


def _per_example_norm(a: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(a.reshape(a.shape[0], -1) ** 2, -1)).reshape((-1,) + (1,) * (a.ndim - 1))


# ----------------------------------------------------------------------------------------------------------
# Samplers
# ----------------------------------------------------------------------------------------------------------


def _one_eval_per_step_chain(update, denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid,
                             first_index: jax.Array | int) -> tuple[jax.Array, Info]:
    """The chain of the first-order samplers: at grid step k, one denoiser call x̂_0(x, t_k), fresh noise z
    of (key, k, example index), then ``update(x, x̂_0, z, α_k, σ_k, α_{k+1}, σ_{k+1})``; NFE = steps run."""

    def step(carry, k):
        x, nfe = carry
        t_s, a_s, s_s = _at(grid, k)
        _, a_t, s_t = _at(grid, k + 1)
        x0 = denoiser(x, t_s, a_s, s_s)
        z = _noise(key, k, x, first_index)
        return update(x, x0, z, a_s, s_s, a_t, s_t), nfe + 1

    x, nfe = _chain(step, (x_T, jnp.zeros((), jnp.int32)), grid)
    return x, {"nfe": nfe}


def ddpm_sampler(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid,
                 first_index: jax.Array | int = 0, variance: str = "posterior") -> tuple[jax.Array, Info]:
    """Ancestral sampling x_{t−1} ~ p(x_{t−1} | x_t) (Ho et al. 2020, Alg. 2) on any sub-grid."""
    check_choice("variance", variance, ("posterior", "forward"))
    update = lambda x, x0, z, a_s, s_s, a_t, s_t: ancestral_step(x, x0, z, a_s, s_s, a_t, s_t, variance)
    return _one_eval_per_step_chain(update, denoiser, key, x_T, grid, first_index)


def ddim_sampler(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, eta: jax.Array | float = 0.0,
                 first_index: jax.Array | int = 0) -> tuple[jax.Array, Info]:
    """DDIM (Song et al. 2021a, eq. 12): deterministic for η = 0, DDPM-like for η = 1; η is an array."""
    eta = jnp.asarray(eta, x_T.dtype)
    update = lambda x, x0, z, a_s, s_s, a_t, s_t: ddim_step(x, x0, z, a_s, s_s, a_t, s_t, eta)
    return _one_eval_per_step_chain(update, denoiser, key, x_T, grid, first_index)


def ddim_encode(denoiser: Denoiser, x0: jax.Array, grid: Grid) -> tuple[jax.Array, Info]:
    """Deterministic DDIM inversion x_0 → x_T (Song et al. 2021a, Sec. 4.3, eq. 14 run backwards):
    x_noisier = α x̂_0 + σ ε̂ with x̂_0, ε̂ predicted at the cleaner point; from the clean end, x̂_0 = x_0 and
    ε̂ is predicted at α x_0 on the first noise level. Inverts :func:`ddim_sampler` with η = 0 up to the
    discretization error."""

    def step(carry, j):
        x, nfe = carry
        k = grid.n_steps - 1 - j  # from point k + 1 (cleaner) to point k (noisier)
        t_c, a_c, s_c = _at(grid, k + 1)
        t_n, a_n, s_n = _at(grid, k)
        clean = s_c <= 0
        xe = jnp.where(clean, a_n * x, x)
        te, ae, se = (jnp.where(clean, u, v) for u, v in ((t_n, t_c), (a_n, a_c), (s_n, s_c)))
        x0e = denoiser(xe, te, ae, se)
        eps = x0_to_eps(xe, x0e, ae, se)
        x0_ = jnp.where(clean, x, x0e)
        return a_n * x0_ + s_n * eps, nfe + 1

    return _finish_info(_chain(step, (x0, jnp.zeros((), jnp.int32)), grid))


def _finish_info(carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, Info]:
    return carry[0], {"nfe": carry[1]}


def annealed_langevin_sampler(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid,
                              step_lr: jax.Array | float = 2e-5, n_inner: jax.Array | int = 5,
                              denoise: bool = True, first_index: jax.Array | int = 0
                              ) -> tuple[jax.Array, Info]:
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1): ``n_inner`` Langevin steps at each noise
    level i with step a_i = ε (σ_i/σ_L)², σ_L = σ/α of the last level (α² times the step in x/α, so VP
    levels get the step of the equivalent VE level); optionally a final Tweedie denoising step
    x ← x̂_0 (Jolicoeur-Martineau et al. 2021; Song & Ermon 2020, Sec. 4)."""
    step_lr = jnp.asarray(step_lr, x_T.dtype)
    n_inner = jnp.asarray(n_inner, jnp.int32)
    last = grid.n_steps - 1
    sigma_last = grid.sigma[last] / grid.alpha[last]

    def step(carry, k):
        x, nfe = carry
        t_s, a_s, s_s = _at(grid, k)
        a = step_lr * (s_s / sigma_last) ** 2

        def inner(m, x_):
            score = x0_to_score(x_, denoiser(x_, t_s, a_s, s_s), a_s, s_s)
            return langevin_step(x_, score, _noise(key, k, x_, first_index, m), a)

        x = lax.fori_loop(0, n_inner, inner, x)
        if denoise:
            x = lax.cond(k == last, lambda: denoiser(x, t_s, a_s, s_s), lambda: x)
        return x, nfe + n_inner + jnp.int32(denoise) * (k == last).astype(jnp.int32)

    x, nfe = _chain(step, (x_T, jnp.zeros((), jnp.int32)), grid)
    return x, {"nfe": nfe}


PREDICTORS = ("reverse_diffusion", "euler_maruyama", "ancestral")
CORRECTORS = ("langevin", "none")


def pc_sampler(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid,
               predictor: str = "reverse_diffusion", corrector: str = "langevin",
               snr: jax.Array | float = 0.16, n_corrector: jax.Array | int = 1,
               first_index: jax.Array | int = 0, norms: str = "example") -> tuple[jax.Array, Info]:
    """Predictor–corrector sampling (Song et al. 2021, Alg. 1–5): at each level ``n_corrector`` Langevin
    corrector steps with step ε = 2 α_{s|t}² (r ‖z‖/‖∇log p‖)², r the target SNR (Alg. 4–5, norms per
    example), then one predictor step: 'reverse_diffusion' (eq. 46), 'euler_maruyama' (Euler–Maruyama on
    the reverse SDE, eq. 6) or 'ancestral' (eq. 47 / Ho et al. 2020).

    ``norms='example'`` uses each example's own ‖z‖/‖s‖ (Alg. 4 as written; batch-independent, but the
    step then depends on x, which biases the corrector's stationary law in low dimension);
    ``norms='batch'`` uses their batch means like the reference code (unbiased, but couples the examples)."""
    check_choice("predictor", predictor, PREDICTORS)
    check_choice("corrector norms", norms, ("example", "batch"))
    check_choice("corrector", corrector, CORRECTORS)
    snr = jnp.asarray(snr, x_T.dtype)
    n_corr = jnp.asarray(n_corrector if corrector == "langevin" else 0, jnp.int32)

    def score_at(x, t, a, s):
        return x0_to_score(x, denoiser(x, t, a, s), a, s)

    def step(carry, k):
        x, nfe = carry
        t_s, a_s, s_s = _at(grid, k)
        _, a_t, s_t = _at(grid, k + 1)
        a_st, var_st = transition_alpha_sigma(a_s, s_s, a_t, s_t)

        def correct(m, x_):
            g = score_at(x_, t_s, a_s, s_s)
            z = _noise(key, k, x_, first_index, m + 1)
            ratio = _per_example_norm(z) / _per_example_norm(g)
            if norms == "batch":
                ratio = jnp.mean(_per_example_norm(z)) / jnp.mean(_per_example_norm(g))
            eps = 2.0 * a_st**2 * (snr * ratio) ** 2
            return x_ + eps * g + jnp.sqrt(2.0 * eps) * z

        x = lax.fori_loop(0, n_corr, correct, x)
        z = _noise(key, k, x, first_index, 0)
        last = s_t <= 0
        x0 = denoiser(x, t_s, a_s, s_s)
        if predictor == "ancestral":
            x = ancestral_step(x, x0, z, a_s, s_s, a_t, s_t)
        else:
            score = x0_to_score(x, x0, a_s, s_s)
            if predictor == "reverse_diffusion":
                mean = x - (a_st - 1.0) * x + var_st * score
                std = jnp.sqrt(var_st)
            else:
                dt = grid.time[k + 1] - grid.time[k]
                mean = x + (grid.f[k] * x - grid.g2[k] * score) * dt
                std = jnp.sqrt(grid.g2[k] * -dt)
            x = mean + jnp.where(last, 0.0, std) * z
        return x, nfe + 1 + n_corr

    x, nfe = _chain(step, (x_T, jnp.zeros((), jnp.int32)), grid)
    return x, {"nfe": nfe}


def _ode_derivative(denoiser: Denoiser, x: jax.Array, t: jax.Array, a: jax.Array, s: jax.Array):
    """dy/dσ̃ = (y − D(y; σ̃))/σ̃ with y = x/α, σ̃ = σ/α (Karras et al. 2022, eq. 4 with s(t) = α)."""
    y, r = x / a, s / a
    return y, r, (y - denoiser(x, t, a, s)) / r


def euler_sampler(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid,
                  first_index: jax.Array | int = 0) -> tuple[jax.Array, Info]:
    """Euler steps on the probability-flow ODE (Song et al. 2021, eq. 13) in EDM's scaled variables
    (Karras et al. 2022, eq. 4 and Alg. 1 without the Heun correction). Deterministic; ``key`` unused."""
    del key, first_index

    def step(carry, k):
        x, nfe = carry
        t_s, a_s, s_s = _at(grid, k)
        _, a_t, s_t = _at(grid, k + 1)
        y, r_s, d = _ode_derivative(denoiser, x, t_s, a_s, s_s)
        return a_t * (y + (s_t / a_t - r_s) * d), nfe + 1

    x, nfe = _chain(step, (x_T, jnp.zeros((), jnp.int32)), grid)
    return x, {"nfe": nfe}


def heun_sampler(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid,
                 first_index: jax.Array | int = 0) -> tuple[jax.Array, Info]:
    """Heun's 2nd-order method on the probability-flow ODE (Karras et al. 2022, Alg. 1): the correction
    is skipped on the step into σ = 0, so NFE = 2N − 1."""
    del key, first_index

    def step(carry, k):
        x, nfe = carry
        t_s, a_s, s_s = _at(grid, k)
        t_t, a_t, s_t = _at(grid, k + 1)
        y, r_s, d = _ode_derivative(denoiser, x, t_s, a_s, s_s)
        r_t = s_t / a_t
        y_euler = y + (r_t - r_s) * d

        def correct():
            _, _, d2 = _ode_derivative(denoiser, a_t * y_euler, t_t, a_t, s_t)
            return y + (r_t - r_s) * 0.5 * (d + d2)

        y_next = lax.cond(s_t > 0, correct, lambda: y_euler)
        return a_t * y_next, nfe + 1 + (s_t > 0).astype(jnp.int32)

    x, nfe = _chain(step, (x_T, jnp.zeros((), jnp.int32)), grid)
    return x, {"nfe": nfe}


def dpm_solver_2m_sampler(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid,
                          first_index: jax.Array | int = 0) -> tuple[jax.Array, Info]:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2): with λ = log(α/σ), h = λ_t − λ_s, r = h_prev/h,
    x_t = (σ_t/σ_s) x_s − α_t (e^{−h} − 1) D, D = (1 + 1/2r) x̂_0(s) − (1/2r) x̂_0(prev); first order on the
    first step and on the step into σ = 0. Deterministic; ``key`` unused."""
    del key, first_index

    def step(carry, k):
        x, x0_prev, h_prev, nfe = carry
        t_s, a_s, s_s = _at(grid, k)
        _, a_t, s_t = _at(grid, k + 1)
        x0 = denoiser(x, t_s, a_s, s_s)
        last = s_t <= 0
        h = jnp.log((s_s / a_s) / jnp.where(last, 1.0, s_t / a_t))
        second = jnp.logical_and(k > 0, jnp.logical_not(last))
        r = h_prev / jnp.where(second, h, 1.0)
        c = jnp.where(second, 0.5 / jnp.where(second, r, 1.0), 0.0)
        d = (1.0 + c) * x0 - c * x0_prev
        exp_neg_h = (s_t / a_t) / (s_s / a_s)
        x_next = (s_t / s_s) * x - a_t * (exp_neg_h - 1.0) * d
        return x_next, x0, h, nfe + 1

    init = (x_T, jnp.zeros_like(x_T), jnp.ones((), x_T.dtype), jnp.zeros((), jnp.int32))
    x, _, _, nfe = _chain(step, init, grid)
    return x, {"nfe": nfe}


SAMPLERS: dict[str, Callable[..., tuple[jax.Array, Info]]] = {
    "ddpm": ddpm_sampler,
    "ddim": ddim_sampler,
    "annealed_langevin": annealed_langevin_sampler,
    "pc": pc_sampler,
    "euler": euler_sampler,
    "heun": heun_sampler,
    "dpm_solver_2m": dpm_solver_2m_sampler,
}


def get_sampler(name: str) -> Callable[..., tuple[jax.Array, Info]]:
    """The sampler registered under ``name``."""
    check_choice("sampler", name, SAMPLERS)
    return SAMPLERS[name]


def check_sampler_args(name: str, steps: int, max_steps: int, eta: float = 0.0, guidance: float = 1.0) -> None:
    """Host-side validation of a sampling request; raises one-line ConfigErrors."""
    check_choice("sampler", name, SAMPLERS)
    require(int(steps) >= 1, f"steps must be >= 1, got {steps}")
    require(int(steps) <= max_steps, f"steps must be <= {max_steps} (schedule length / max_steps), got {steps}")
    require(0.0 <= float(eta) <= 1.0, f"eta must be in [0, 1], got {eta}")
    require(float(guidance) >= 0.0, f"guidance scale must be >= 0, got {guidance}")
