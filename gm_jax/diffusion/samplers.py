"""Samplers as data: a typed registry of chains ``(denoiser, key, x_T, grid, first_index, **options) -> Chain``.

* ``denoiser(x, t, alpha, sigma) -> x̂_0`` (see :mod:`gm_jax.diffusion.parametrization`); ε̂ and the score
  follow from x̂_0 in closed form, so one network interface serves every sampler.
* A sampler is one *chain builder* plus one :class:`SamplerSpec` passed to :func:`register_sampler` (the
  pattern of score_sde's ``register_predictor``). The builder returns a :class:`Chain`: the carry
  ``(x, nfe, extra)`` before grid step 0 and the pure step ``(carry, k) -> carry``. :func:`run_chain` runs it
  as one ``lax.scan`` over the grid's static length whose unused steps are skipped by ``lax.cond``, so
  changing the number of steps, η, the SNR or guidance never recompiles; the bench drives the very same
  step from Python (one compiled call per step).
* The spec declares the sampler's run-time options (:class:`gm_jax.core.Option`: name, range, default),
  whether it is deterministic, and its NFE for N steps. Options of kind 'str' select code (static);
  numbers are arrays.
* ``grid`` is a padded :class:`~gm_jax.diffusion.schedules.Grid` of static length; ``grid.n_steps`` (an
  array) says how many steps run. ``info["nfe"]`` counts the denoiser calls actually made.
* Noise of step k for example i is drawn from ``fold_in(fold_in(key, k), first_index + i)``, so a sample
  does not depend on the batch it is drawn in. The step into the clean end of the grid adds no noise.
* The predictor–corrector sampler's predictors and correctors are registered the same way
  (:func:`register_predictor`, :func:`register_corrector`).
* Nothing here jits or pmaps; the caller does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from gm_jax.core.errors import ConfigError, check_choice
from gm_jax.core.options import Option, merge_options
from gm_jax.core.rng import per_example_normal
from gm_jax.diffusion.parametrization import Denoiser, x0_to_eps, x0_to_score
from gm_jax.diffusion.schedules import Grid, posterior_mean_variance, transition_alpha_sigma

Info = dict[str, jax.Array]


class Chain(NamedTuple):
    """A sampler's chain: ``init`` = ``(x_T, nfe = 0, extra)`` and ``step(carry, k) -> carry`` for grid step k
    (from point k to point k + 1). ``extra`` is whatever else the sampler carries (e.g. the previous x̂_0)."""

    init: tuple[jax.Array, jax.Array, Any]
    step: Callable[[Any, jax.Array], Any]


def start(x: jax.Array, extra: Any = ()) -> tuple[jax.Array, jax.Array, Any]:
    """The initial carry ``(x, 0, extra)`` of a chain."""
    return x, jnp.zeros((), jnp.int32), extra


def run_chain(chain: Chain, grid: Grid) -> tuple[jax.Array, Info]:
    """Run ``chain.step(carry, k)`` for k = 0 … grid.n_steps − 1 in one ``lax.while_loop`` (the step count
    is an array: no recompiles, and no cost for the unused slots of the static grid — a scan over
    ``max_steps`` with a skipping ``cond`` copied multistep histories through every unused slot, ~45 µs each
    at batch 64×28×28×1); returns (x, {"nfe": ...})."""

    def body(state):
        c, k = state
        return chain.step(c, k), k + 1

    (x, nfe, _), _ = lax.while_loop(lambda state: state[1] < grid.n_steps, body,
                                    (chain.init, jnp.zeros((), jnp.int32)))
    return x, {"nfe": nfe}


def _noise(key: jax.Array, k: jax.Array, x: jax.Array, first_index: jax.Array | int, inner: jax.Array | int = 0
           ) -> jax.Array:
    step = jax.random.fold_in(jax.random.fold_in(key, k), inner)
    return per_example_normal(step, first_index, x.shape, x.dtype)


def _at(grid: Grid, k: jax.Array) -> tuple[jax.Array, ...]:
    return grid.t[k], grid.alpha[k], grid.sigma[k]


def prior_sample(key: jax.Array, grid: Grid, shape: tuple[int, ...], first_index: jax.Array | int = 0
                 ) -> jax.Array:
    """x_T ~ N(0, σ_0² I) at the first grid point (σ_0 ≈ 1 for VP, σ_max for VE), per-example keyed."""
    return grid.sigma[0] * per_example_normal(key, first_index, shape)


# ----------------------------------------------------------------------------------------------------------
# The registries
# ----------------------------------------------------------------------------------------------------------


def _steps_nfe(steps: int, options: Mapping[str, Any]) -> int:
    del options
    return int(steps)


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
    """One registered sampler.

    chain: ``(denoiser, key, x_T, grid, first_index, **options) -> Chain``; options: its run-time options
    (beyond the grid and the guidance of the denoiser), with ranges and defaults; deterministic: the key is
    unused; nfe: ``(steps, options with defaults filled) -> denoiser calls`` for ``steps`` grid steps;
    adaptive: the number of calls depends on the data (adaptive step size), ``nfe`` is then the most it can
    be and ``info["nfe"]`` the count actually made. Calling the spec runs the chain."""

    name: str
    chain: Callable[..., Chain]
    options: tuple[Option, ...] = ()
    deterministic: bool = False
    help: str = ""
    nfe: Callable[[int, Mapping[str, Any]], int] = _steps_nfe
    adaptive: bool = False

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)

    @property
    def static_options(self) -> tuple[str, ...]:
        """Options that select code (kind 'str'): a change compiles a new chain."""
        return tuple(o.name for o in self.options if o.kind == "str")

    def defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self.options}

    def reject_unknown(self, names: Any) -> None:
        """One-line ConfigError for the first name this sampler does not take, naming the samplers that do."""
        for name in names:
            if name not in self.option_names:
                takers = samplers_taking(name)
                where = f"samplers that take it: {', '.join(takers)}" if takers else "no sampler takes it"
                raise ConfigError(f"sampler {self.name!r} does not take --{name}; {where}")

    def check(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """``given`` (``None``: not given) with the defaults filled in for the rest, all range-checked."""
        given = {k: v for k, v in given.items() if v is not None}
        self.reject_unknown(given)
        by_name = {o.name: o for o in self.options}
        return {k: by_name[k].check(v) for k, v in {**self.defaults(), **given}.items()}

    def expected_nfe(self, steps: int, **options: Any) -> int:
        """The number of denoiser calls this sampler is defined to make for ``steps`` grid steps (an
        ``adaptive`` sampler: the most it can make)."""
        return int(self.nfe(int(steps), {**self.defaults(), **options}))

    def __call__(self, denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid,
                 first_index: jax.Array | int = 0, **options: Any) -> tuple[jax.Array, Info]:
        self.reject_unknown(options)
        return run_chain(self.chain(denoiser, key, x_T, grid, first_index, **options), grid)


_SAMPLERS: dict[str, SamplerSpec] = {}


def register_sampler(spec: SamplerSpec) -> SamplerSpec:
    """Add ``spec`` to the registry (a name may be registered once); returns it."""
    if spec.name in _SAMPLERS:
        raise ValueError(f"sampler {spec.name!r} is already registered")
    _SAMPLERS[spec.name] = spec
    return spec


def get_sampler(name: str) -> SamplerSpec:
    """The spec registered under ``name``; one-line ConfigError naming the registered ones otherwise."""
    check_choice("sampler", name, _SAMPLERS)
    return _SAMPLERS[name]


def sampler_names() -> tuple[str, ...]:
    """Registered samplers in registration order."""
    return tuple(_SAMPLERS)


def samplers_taking(option: str) -> tuple[str, ...]:
    """The registered samplers that declare ``option``."""
    return tuple(s.name for s in _SAMPLERS.values() if option in s.option_names)


def all_sampler_options() -> tuple[Option, ...]:
    """The union of every registered sampler's options (first declaration of each name)."""
    return merge_options(*(s.options for s in _SAMPLERS.values()))


@dataclasses.dataclass(frozen=True)
class PredictorSpec:
    """A predictor of :func:`pc_chain`: ``fn(x, x̂_0, z, grid, k) -> x`` at point k + 1, given x̂_0 at point k."""

    name: str
    fn: Callable[[jax.Array, jax.Array, jax.Array, Grid, jax.Array], jax.Array]
    help: str = ""


@dataclasses.dataclass(frozen=True)
class CorrectorSpec:
    """A corrector of :func:`pc_chain`: ``fn(x, score, z, alpha_st, snr, norms) -> x`` (one step at a fixed
    level; α_{s|t} of the level pair); ``fn=None``: no corrector steps (and no corrector NFE)."""

    name: str
    fn: Callable[..., jax.Array] | None
    help: str = ""


_PREDICTORS: dict[str, PredictorSpec] = {}
_CORRECTORS: dict[str, CorrectorSpec] = {}


def register_predictor(spec: PredictorSpec) -> PredictorSpec:
    if spec.name in _PREDICTORS:
        raise ValueError(f"predictor {spec.name!r} is already registered")
    _PREDICTORS[spec.name] = spec
    return spec


def register_corrector(spec: CorrectorSpec) -> CorrectorSpec:
    if spec.name in _CORRECTORS:
        raise ValueError(f"corrector {spec.name!r} is already registered")
    _CORRECTORS[spec.name] = spec
    return spec


def get_predictor(name: str) -> PredictorSpec:
    check_choice("predictor", name, _PREDICTORS)
    return _PREDICTORS[name]


def get_corrector(name: str) -> CorrectorSpec:
    check_choice("corrector", name, _CORRECTORS)
    return _CORRECTORS[name]


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
# First-order samplers: DDPM and DDIM
# ----------------------------------------------------------------------------------------------------------


def _first_order_chain(update: Callable[..., jax.Array], denoiser: Denoiser, key: jax.Array, x_T: jax.Array,
                       grid: Grid, first_index: jax.Array | int, noisy: jax.Array | bool = True) -> Chain:
    """The chain of the first-order samplers: at grid step k, one denoiser call x̂_0(x, t_k), noise z of
    (key, k, example index) — drawn only when ``noisy`` (an array or a bool), zeros otherwise — then
    ``update(x, x̂_0, z, α_k, σ_k, α_{k+1}, σ_{k+1})``; NFE = steps run."""

    def step(carry, k):
        x, nfe, extra = carry
        t_s, a_s, s_s = _at(grid, k)
        _, a_t, s_t = _at(grid, k + 1)
        x0 = denoiser(x, t_s, a_s, s_s)
        draw = lambda: _noise(key, k, x, first_index)
        z = draw() if noisy is True else lax.cond(noisy, draw, lambda: jnp.zeros_like(x))
        return update(x, x0, z, a_s, s_s, a_t, s_t), nfe + 1, extra

    return Chain(start(x_T), step)


def ddpm_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, first_index: jax.Array | int = 0,
               variance: str = "posterior") -> Chain:
    """Ancestral sampling x_{t−1} ~ p(x_{t−1} | x_t) (Ho et al. 2020, Alg. 2) on any sub-grid."""
    check_choice("variance", variance, ("posterior", "forward"))
    update = lambda x, x0, z, a_s, s_s, a_t, s_t: ancestral_step(x, x0, z, a_s, s_s, a_t, s_t, variance)
    return _first_order_chain(update, denoiser, key, x_T, grid, first_index)


def ddim_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, first_index: jax.Array | int = 0,
               eta: jax.Array | float = 0.0) -> Chain:
    """DDIM (Song et al. 2021a, eq. 12): deterministic for η = 0 (no noise is drawn: ``lax.cond`` on η > 0,
    η stays an array), DDPM-like for η = 1."""
    eta = jnp.asarray(eta, x_T.dtype)
    update = lambda x, x0, z, a_s, s_s, a_t, s_t: ddim_step(x, x0, z, a_s, s_s, a_t, s_t, eta)
    return _first_order_chain(update, denoiser, key, x_T, grid, first_index, noisy=eta > 0)


def ddim_encode(denoiser: Denoiser, x0: jax.Array, grid: Grid) -> tuple[jax.Array, Info]:
    """Deterministic DDIM inversion x_0 → x_T (Song et al. 2021a, Sec. 4.3, eq. 14 run backwards):
    x_noisier = α x̂_0 + σ ε̂ with x̂_0, ε̂ predicted at the cleaner point; from the clean end, x̂_0 = x_0 and
    ε̂ is predicted at α x_0 on the first noise level. Inverts DDIM with η = 0 up to the discretization
    error."""

    def step(carry, j):
        x, nfe, extra = carry
        k = grid.n_steps - 1 - j  # from point k + 1 (cleaner) to point k (noisier)
        t_c, a_c, s_c = _at(grid, k + 1)
        t_n, a_n, s_n = _at(grid, k)
        clean = s_c <= 0
        xe = jnp.where(clean, a_n * x, x)
        te, ae, se = (jnp.where(clean, u, v) for u, v in ((t_n, t_c), (a_n, a_c), (s_n, s_c)))
        x0e = denoiser(xe, te, ae, se)
        eps = x0_to_eps(xe, x0e, ae, se)
        x0_ = jnp.where(clean, x, x0e)
        return a_n * x0_ + s_n * eps, nfe + 1, extra

    return run_chain(Chain(start(x0), step), grid)


# ----------------------------------------------------------------------------------------------------------
# Langevin samplers: annealed Langevin dynamics and predictor–corrector
# ----------------------------------------------------------------------------------------------------------


LANGEVIN_STEP_RATIO = 0.2  # ε/σ_L² of the default step: NCSN's ε = 2e-5 at σ_L = 0.01 (Song & Ermon 2019)


def annealed_langevin_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid,
                            first_index: jax.Array | int = 0, step_lr: jax.Array | float = 0.0,
                            n_inner: jax.Array | int = 5, denoise: jax.Array | int = 1) -> Chain:
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1): ``n_inner`` Langevin steps at each noise
    level i with step a_i = ε (σ_i/σ_L)², σ_L = σ/α of the last level of the grid in use (α² times the step
    in x/α, so VP levels get the step of the equivalent VE level); with ``denoise`` a final Tweedie
    denoising step x ← x̂_0 (Jolicoeur-Martineau et al. 2021; Song & Ermon 2020, Sec. 4). ``step_lr`` = 0
    (the default) sets ε = :data:`LANGEVIN_STEP_RATIO` σ_L², i.e. a_i = 0.2 σ_i² (Song & Ermon 2020,
    technique 4, ε_i = ε σ_i²/σ_L², with ε scaled to the grid's σ_L: 2e-5 for NCSN's σ_L = 0.01)."""
    step_lr = jnp.asarray(step_lr, x_T.dtype)
    n_inner = jnp.asarray(n_inner, jnp.int32)
    denoise = jnp.asarray(denoise, jnp.int32) > 0
    last = grid.n_steps - 1
    sigma_last = grid.sigma[last] / grid.alpha[last]
    step_lr = jnp.where(step_lr > 0, step_lr, LANGEVIN_STEP_RATIO * sigma_last**2).astype(x_T.dtype)

    def step(carry, k):
        x, nfe, extra = carry
        t_s, a_s, s_s = _at(grid, k)
        a = step_lr * (s_s / sigma_last) ** 2

        def inner(m, x_):
            score = x0_to_score(x_, denoiser(x_, t_s, a_s, s_s), a_s, s_s)
            return langevin_step(x_, score, _noise(key, k, x_, first_index, m), a)

        x = lax.fori_loop(0, n_inner, inner, x)
        final = jnp.logical_and(denoise, k == last)
        x = lax.cond(final, lambda: denoiser(x, t_s, a_s, s_s), lambda: x)
        return x, nfe + n_inner + final.astype(jnp.int32), extra

    return Chain(start(x_T), step)


def langevin_corrector(x: jax.Array, score: jax.Array, z: jax.Array, alpha_st: jax.Array, snr: jax.Array,
                       norms: str) -> jax.Array:
    """One Langevin corrector step x ← x + ε s + √(2ε) z with ε = 2 α_{s|t}² (r ‖z‖/‖s‖)², r the target SNR
    (Song et al. 2021, Alg. 4–5). ``norms='example'``: each example's own ‖z‖/‖s‖ (Alg. 4 as written;
    batch-independent, but the step then depends on x, which biases the stationary law in low dimension);
    ``'batch'``: the ratio of their batch means, like the reference code (couples the examples)."""
    if norms == "batch":
        ratio = jnp.mean(_per_example_norm(z)) / jnp.mean(_per_example_norm(score))
    else:
        ratio = _per_example_norm(z) / _per_example_norm(score)
    eps = 2.0 * alpha_st**2 * (snr * ratio) ** 2
    return x + eps * score + jnp.sqrt(2.0 * eps) * z


def reverse_diffusion_predictor(x: jax.Array, x0: jax.Array, z: jax.Array, grid: Grid, k: jax.Array) -> jax.Array:
    """x ← x − (α_{s|t} − 1) x + σ²_{s|t} ∇log p + σ_{s|t} z, the discretized reverse SDE of Song et al. 2021,
    eq. 46, in (α, σ) form; no noise into σ = 0."""
    _, a_s, s_s = _at(grid, k)
    _, a_t, s_t = _at(grid, k + 1)
    a_st, var_st = transition_alpha_sigma(a_s, s_s, a_t, s_t)
    score = x0_to_score(x, x0, a_s, s_s)
    mean = x - (a_st - 1.0) * x + var_st * score
    return mean + jnp.where(s_t <= 0, 0.0, jnp.sqrt(var_st)) * z


def euler_maruyama_predictor(x: jax.Array, x0: jax.Array, z: jax.Array, grid: Grid, k: jax.Array) -> jax.Array:
    """Euler–Maruyama on the reverse SDE dx = [f x − g² ∇log p] dt + g dw̄ (Song et al. 2021, eq. 6);
    no noise into σ = 0."""
    _, a_s, s_s = _at(grid, k)
    s_t = grid.sigma[k + 1]
    score = x0_to_score(x, x0, a_s, s_s)
    dt = grid.time[k + 1] - grid.time[k]
    mean = x + (grid.f[k] * x - grid.g2[k] * score) * dt
    return mean + jnp.where(s_t <= 0, 0.0, jnp.sqrt(grid.g2[k] * -dt)) * z


def ancestral_predictor(x: jax.Array, x0: jax.Array, z: jax.Array, grid: Grid, k: jax.Array) -> jax.Array:
    """The ancestral step (Song et al. 2021, eq. 47; Ho et al. 2020, Alg. 2): :func:`ancestral_step`."""
    _, a_s, s_s = _at(grid, k)
    _, a_t, s_t = _at(grid, k + 1)
    return ancestral_step(x, x0, z, a_s, s_s, a_t, s_t)


def pc_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, first_index: jax.Array | int = 0,
             predictor: str = "reverse_diffusion", corrector: str = "langevin", snr: jax.Array | float = 0.16,
             n_corrector: jax.Array | int = 1, norms: str = "batch") -> Chain:
    """Predictor–corrector sampling (Song et al. 2021, Alg. 1–5): at each level ``n_corrector`` steps of
    the registered corrector (:func:`langevin_corrector`), then one step of the registered predictor
    (:func:`reverse_diffusion_predictor`, :func:`euler_maruyama_predictor`, :func:`ancestral_predictor`).
    The corrector's step uses batch-mean norms by default, like Song et al.'s reference code: with
    per-example norms the step depends on x and the chain's law moves away from the target as the number
    of levels grows (on the exact 2-D mixture, more steps are worse)."""
    pred, corr = get_predictor(predictor), get_corrector(corrector)
    check_choice("corrector norms", norms, ("example", "batch"))
    snr = jnp.asarray(snr, x_T.dtype)
    n_corr = jnp.asarray(n_corrector if corr.fn is not None else 0, jnp.int32)

    def step(carry, k):
        x, nfe, extra = carry
        t_s, a_s, s_s = _at(grid, k)
        _, a_t, s_t = _at(grid, k + 1)
        a_st, _ = transition_alpha_sigma(a_s, s_s, a_t, s_t)

        def correct(m, x_):
            g = x0_to_score(x_, denoiser(x_, t_s, a_s, s_s), a_s, s_s)
            return corr.fn(x_, g, _noise(key, k, x_, first_index, m + 1), a_st, snr, norms)

        if corr.fn is not None:
            x = lax.fori_loop(0, n_corr, correct, x)
        z = _noise(key, k, x, first_index, 0)
        x0 = denoiser(x, t_s, a_s, s_s)
        return pred.fn(x, x0, z, grid, k), nfe + 1 + n_corr, extra

    return Chain(start(x_T), step)


# ----------------------------------------------------------------------------------------------------------
# Probability-flow ODE samplers: Euler, Heun, DPM-Solver++(2M)
# ----------------------------------------------------------------------------------------------------------


def _ode_derivative(denoiser: Denoiser, x: jax.Array, t: jax.Array, a: jax.Array, s: jax.Array):
    """dy/dσ̃ = (y − D(y; σ̃))/σ̃ with y = x/α, σ̃ = σ/α (Karras et al. 2022, eq. 4 with s(t) = α)."""
    y, r = x / a, s / a
    return y, r, (y - denoiser(x, t, a, s)) / r


def _probability_flow_chain(denoiser: Denoiser, x_T: jax.Array, grid: Grid, heun: bool) -> Chain:
    """Steps on the probability-flow ODE (Song et al. 2021, eq. 13) in EDM's scaled variables (Karras et al.
    2022, eq. 4 and Alg. 1): the Euler step y' = y + (σ̃_t − σ̃_s) d, and with ``heun`` its 2nd-order
    correction y' = y + (σ̃_t − σ̃_s)(d + d')/2, skipped on the step into σ = 0 (NFE = 2N − 1)."""

    def step(carry, k):
        x, nfe, extra = carry
        t_s, a_s, s_s = _at(grid, k)
        t_t, a_t, s_t = _at(grid, k + 1)
        y, r_s, d = _ode_derivative(denoiser, x, t_s, a_s, s_s)
        r_t = s_t / a_t
        y_euler = y + (r_t - r_s) * d
        if not heun:
            return a_t * y_euler, nfe + 1, extra

        def correct():
            _, _, d2 = _ode_derivative(denoiser, a_t * y_euler, t_t, a_t, s_t)
            return y + (r_t - r_s) * 0.5 * (d + d2)

        y_next = lax.cond(s_t > 0, correct, lambda: y_euler)
        return a_t * y_next, nfe + 1 + (s_t > 0).astype(jnp.int32), extra

    return Chain(start(x_T), step)


def euler_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, first_index: jax.Array | int = 0
                ) -> Chain:
    """Euler on the probability-flow ODE (Karras et al. 2022, Alg. 1 without the Heun correction)."""
    del key, first_index
    return _probability_flow_chain(denoiser, x_T, grid, heun=False)


def heun_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, first_index: jax.Array | int = 0
               ) -> Chain:
    """Heun's 2nd-order method on the probability-flow ODE (Karras et al. 2022, Alg. 1)."""
    del key, first_index
    return _probability_flow_chain(denoiser, x_T, grid, heun=True)


def dpm_solver_2m_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid,
                        first_index: jax.Array | int = 0) -> Chain:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2): with λ = log(α/σ), h = λ_t − λ_s, r = h_prev/h,
    x_t = (σ_t/σ_s) x_s − α_t (e^{−h} − 1) D, D = (1 + 1/2r) x̂_0(s) − (1/2r) x̂_0(prev); first order on the
    first step and on the step into σ = 0. ``extra`` = (x̂_0 of the previous step, its h)."""
    del key, first_index

    def step(carry, k):
        x, nfe, (x0_prev, h_prev) = carry
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
        return x_next, nfe + 1, (x0, h)

    return Chain(start(x_T, (jnp.zeros_like(x_T), jnp.ones((), x_T.dtype))), step)


# ----------------------------------------------------------------------------------------------------------
# The sampler zoo: Euler ancestral, EDM's stochastic sampler, DPM-Solver++(2M) SDE, linear multistep
# ----------------------------------------------------------------------------------------------------------


def ancestral_split(r_s: jax.Array, r_t: jax.Array, eta: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(σ_down, σ_up) of an ancestral step from σ_s to σ_t (in σ̃ = σ/α): σ_up = min(σ_t, η √(σ_t²(σ_s² − σ_t²)/σ_s²)),
    σ_down = √(σ_t² − σ_up²), so that σ_down² + σ_up² = σ_t² (η = 1: the DDPM posterior noise of the VE
    process); σ_down = σ_t exactly when σ_up = 0."""
    up = jnp.minimum(r_t, eta * jnp.sqrt(jnp.maximum(r_t**2 * (r_s**2 - r_t**2) / r_s**2, 0.0)))
    down = jnp.where(up > 0, jnp.sqrt(jnp.maximum(r_t**2 - up**2, 0.0)), r_t)
    return down, up


def euler_ancestral_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid,
                          first_index: jax.Array | int = 0, ancestral_eta: jax.Array | float = 1.0) -> Chain:
    """Euler ancestral in EDM's scaled variables y = x/α, σ̃ = σ/α (Karras et al. 2022, eq. 4): an Euler step
    of the probability-flow ODE down to σ_down, then fresh noise σ_up z (:func:`ancestral_split`):
    y' = y + (σ_down − σ̃_s)(y − D(y; σ̃_s))/σ̃_s + σ_up z. η = 0 is :func:`euler_chain` exactly (no noise
    drawn); the step into σ = 0 adds none."""
    eta = jnp.asarray(ancestral_eta, x_T.dtype)

    def step(carry, k):
        x, nfe, extra = carry
        t_s, a_s, s_s = _at(grid, k)
        _, a_t, s_t = _at(grid, k + 1)
        y, r_s, d = _ode_derivative(denoiser, x, t_s, a_s, s_s)
        down, up = ancestral_split(r_s, s_t / a_t, eta)
        y_next = y + (down - r_s) * d
        y_next = lax.cond(up > 0, lambda: y_next + up * _noise(key, k, x, first_index), lambda: y_next)
        return a_t * y_next, nfe + 1, extra

    return Chain(start(x_T), step)


def _interpolated_t(grid: Grid, k: jax.Array, r_hat: jax.Array) -> jax.Array:
    """The network time at σ̃ = r_hat ≥ σ̃_k: t linear in log σ̃ between grid points k and k − 1 (clamped to
    them; t_k at k = 0, where no point above exists)."""
    prev = jnp.maximum(k - 1, 0)
    r_k = grid.sigma[k] / grid.alpha[k]
    r_p = grid.sigma[prev] / grid.alpha[prev]
    ok = r_p > r_k
    frac = jnp.where(ok, (jnp.log(r_hat) - jnp.log(r_k)) / jnp.where(ok, jnp.log(r_p) - jnp.log(r_k), 1.0), 0.0)
    return grid.t[k] + jnp.clip(frac, 0.0, 1.0) * (grid.t[prev] - grid.t[k])


def level_at(grid: Grid, r: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(t, α, σ) of the level σ̃ = σ/α = r: t and log α linear in log σ̃ between the two noise levels of the
    grid (points < n_steps) that bracket r, clamped to the first and the last noise level outside them;
    σ = α r, so denoisers of (x/α, σ/α) (EDM preconditioning, the exact mixture) see exactly σ̃ = r, networks
    conditioned on t an interpolated time. At a grid point it returns that point's values."""
    n = grid.n_steps
    used = jnp.arange(grid.max_steps + 1) < n
    log_r = jnp.log(jnp.where(used, grid.sigma / grid.alpha, 1.0))
    target = jnp.log(r)
    above = jnp.sum(jnp.logical_and(used, log_r > target))
    j = jnp.clip(above - 1, 0, jnp.maximum(n - 2, 0))
    j1 = jnp.minimum(j + 1, n - 1)
    gap = log_r[j1] - log_r[j]
    frac = jnp.clip(jnp.where(gap < 0, (target - log_r[j]) / jnp.where(gap < 0, gap, 1.0), 0.0), 0.0, 1.0)
    t = grid.t[j] + frac * (grid.t[j1] - grid.t[j])
    log_a = jnp.log(grid.alpha[j]) + frac * (jnp.log(grid.alpha[j1]) - jnp.log(grid.alpha[j]))
    alpha = jnp.exp(log_a).astype(jnp.result_type(r, grid.alpha))
    return t, alpha, alpha * r


def churn_gamma(r: jax.Array, n_steps: jax.Array, s_churn: jax.Array, s_tmin: jax.Array, s_tmax: jax.Array
                ) -> jax.Array:
    """γ_i = min(S_churn/N, √2 − 1) if S_tmin ≤ σ̃_i ≤ S_tmax, else 0 (Karras et al. 2022, Alg. 2, line 4)."""
    inside = jnp.logical_and(r >= s_tmin, r <= s_tmax)
    return jnp.where(inside, jnp.minimum(s_churn / n_steps.astype(r.dtype), jnp.sqrt(2.0) - 1.0), 0.0)


def edm_stochastic_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid,
                         first_index: jax.Array | int = 0, s_churn: jax.Array | float = 40.0,
                         s_tmin: jax.Array | float = 0.05, s_tmax: jax.Array | float = 50.0,
                         s_noise: jax.Array | float = 1.003) -> Chain:
    """EDM's stochastic sampler (Karras et al. 2022, Alg. 2) in y = x/α, σ̃ = σ/α: raise the level to
    σ̂ = (1 + γ_i) σ̃_i with ŷ = y + √(σ̂² − σ̃_i²) S_noise z (:func:`churn_gamma`), then one Heun step of the
    probability-flow ODE from σ̂ to σ̃_{i+1}, its correction skipped on the step into σ = 0 (NFE = 2N − 1).
    γ = 0 (S_churn = 0) is :func:`heun_chain` exactly (no noise drawn). The denoiser sees σ̂ at the α of
    point i and a network time interpolated in log σ̃ (:func:`_interpolated_t`): exact for denoisers of
    (x/α, σ/α) (EDM preconditioning, the exact mixture), approximate for networks conditioned on t. The
    defaults are the ImageNet-64 settings of the EDM reference code (S_churn 40, S_tmin 0.05, S_tmax 50,
    S_noise 1.003); S_churn = 0 gives the deterministic Alg. 1."""
    s_churn, s_tmin, s_tmax, s_noise = (jnp.asarray(v, x_T.dtype) for v in (s_churn, s_tmin, s_tmax, s_noise))

    def step(carry, k):
        x, nfe, extra = carry
        t_s, a_s, s_s = _at(grid, k)
        t_t, a_t, s_t = _at(grid, k + 1)
        gamma = churn_gamma(s_s / a_s, grid.n_steps, s_churn, s_tmin, s_tmax)
        churn = gamma > 0
        r_hat = (s_s / a_s) * (1.0 + gamma)
        x_hat = lax.cond(churn, lambda: x + a_s * jnp.sqrt(jnp.maximum(r_hat**2 - (s_s / a_s) ** 2, 0.0))
                         * s_noise * _noise(key, k, x, first_index), lambda: x)
        t_hat = jnp.where(churn, _interpolated_t(grid, k, r_hat), t_s)
        y, r_s, d = _ode_derivative(denoiser, x_hat, t_hat, a_s, jnp.where(churn, a_s * r_hat, s_s))
        r_t = s_t / a_t
        y_euler = y + (r_t - r_s) * d

        def correct():
            _, _, d2 = _ode_derivative(denoiser, a_t * y_euler, t_t, a_t, s_t)
            return y + (r_t - r_s) * 0.5 * (d + d2)

        y_next = lax.cond(s_t > 0, correct, lambda: y_euler)
        return a_t * y_next, nfe + 1 + (s_t > 0).astype(jnp.int32), extra

    return Chain(start(x_T), step)


def dpmpp_2m_sde_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid,
                       first_index: jax.Array | int = 0, ancestral_eta: jax.Array | float = 1.0) -> Chain:
    """DPM-Solver++(2M) SDE, midpoint variant (Lu et al. 2022b, SDE-DPM-Solver++, with η between the ODE and
    the SDE): with λ = −log σ̃, h = λ_t − λ_s, r = h_prev/h and y = x/α,
    y_t = e^{−(1+η)h} y_s + (1 − e^{−(1+η)h}) (x̂_0 + (x̂_0 − x̂_0,prev)/(2r)) + σ̃_t √(1 − e^{−2ηh}) z
    (e^{−(1+η)h} = (σ̃_t/σ̃_s) e^{−ηh}); first order on the first step and into σ = 0 (where y_t = x̂_0, no
    noise). η = 1: the SDE solver; η = 0: DPM-Solver++(2M) (:func:`dpm_solver_2m_chain`, no noise drawn)."""
    eta = jnp.asarray(ancestral_eta, x_T.dtype)

    def step(carry, k):
        x, nfe, (x0_prev, h_prev) = carry
        t_s, a_s, s_s = _at(grid, k)
        _, a_t, s_t = _at(grid, k + 1)
        x0 = denoiser(x, t_s, a_s, s_s)
        last = s_t <= 0
        ratio = (s_t / a_t) / (s_s / a_s)  # e^{−h}
        h = jnp.log((s_s / a_s) / jnp.where(last, 1.0, s_t / a_t))
        second = jnp.logical_and(k > 0, jnp.logical_not(last))
        c = jnp.where(second, 0.5 * jnp.where(second, h, 1.0) / jnp.where(second, h_prev, 1.0), 0.0)
        decay = ratio ** (1.0 + eta)
        y_next = decay * (x / a_s) + (1.0 - decay) * (x0 + c * (x0 - x0_prev))
        scale = (s_t / a_t) * jnp.sqrt(jnp.maximum(1.0 - ratio ** (2.0 * eta), 0.0))
        y_next = lax.cond(scale > 0, lambda: y_next + scale * _noise(key, k, x, first_index), lambda: y_next)
        return a_t * y_next, nfe + 1, (x0, h)

    return Chain(start(x_T, (jnp.zeros_like(x_T), jnp.ones((), x_T.dtype))), step)


_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(3)  # 3-point Gauss–Legendre on [−1, 1]
LMS_MAX_ORDER = 4


def lms_coefficients(nodes: jax.Array, order: jax.Array, r_t: jax.Array) -> jax.Array:
    """c_j = ∫_{σ_0}^{σ_t} L_j(τ) dτ for the Lagrange basis L_j over the ``order`` newest nodes σ_0, σ_1, ...
    (``nodes`` [4], newest first), by 3-point Gauss–Legendre quadrature (exact for the degree ≤ 3 of
    order 4); c_j = 0 for j ≥ order. The Adams–Bashforth weights on a non-uniform grid (Hairer et al. 1993,
    Sec. III.1, eq. 1.5)."""
    a = nodes[0]
    tau = 0.5 * (r_t - a) * jnp.asarray(_GL_NODES, nodes.dtype) + 0.5 * (r_t + a)  # [Q]
    j = jnp.arange(nodes.shape[0])
    active = j < order
    use = jnp.logical_and(active[None, :], j[:, None] != j[None, :])  # [j, m]
    denom = jnp.where(use, nodes[:, None] - nodes[None, :], 1.0)
    factor = jnp.where(use[None], (tau[:, None, None] - nodes[None, None, :]) / denom[None], 1.0)  # [Q, j, m]
    basis = jnp.prod(factor, -1)  # [Q, j]
    c = 0.5 * (r_t - a) * jnp.sum(jnp.asarray(_GL_WEIGHTS, nodes.dtype)[:, None] * basis, 0)
    return jnp.where(active, c, 0.0)


def lms_chain(denoiser: Denoiser, key: jax.Array, x_T: jax.Array, grid: Grid, first_index: jax.Array | int = 0,
              lms_order: jax.Array | int = 4) -> Chain:
    """Linear multistep (Adams–Bashforth) on the probability-flow ODE dy/dσ̃ = (y − D(y; σ̃))/σ̃ in EDM's
    scaled variables (Karras et al. 2022, eq. 4): y' = y + Σ_j c_j d_{k−j} over the last min(k + 1, order)
    derivatives, c_j from :func:`lms_coefficients` (Hairer et al. 1993, Sec. III.1). Order 1 is
    :func:`euler_chain`; NFE = steps. ``extra`` = (the last 4 derivatives, their σ̃), newest first."""
    del key, first_index
    order = jnp.asarray(lms_order, jnp.int32)
    history = (jnp.zeros((LMS_MAX_ORDER,) + x_T.shape, x_T.dtype), jnp.zeros((LMS_MAX_ORDER,), x_T.dtype))

    def step(carry, k):
        x, nfe, (ds, rs) = carry
        t_s, a_s, s_s = _at(grid, k)
        _, a_t, s_t = _at(grid, k + 1)
        y, r_s, d = _ode_derivative(denoiser, x, t_s, a_s, s_s)
        ds = jnp.concatenate([d[None], ds[:-1]], 0)
        rs = jnp.concatenate([jnp.reshape(r_s, (1,)).astype(rs.dtype), rs[:-1]], 0)
        c = lms_coefficients(rs, jnp.minimum(k + 1, order), s_t / a_t).astype(x.dtype)
        y_next = y + jnp.tensordot(c, ds, axes=1)
        return a_t * y_next, nfe + 1, (ds, rs)

    return Chain(start(x_T, history), step)


# ----------------------------------------------------------------------------------------------------------
# Registrations
# ----------------------------------------------------------------------------------------------------------

register_predictor(PredictorSpec("reverse_diffusion", reverse_diffusion_predictor, "reverse-diffusion (eq. 46)"))
register_predictor(PredictorSpec("euler_maruyama", euler_maruyama_predictor, "Euler–Maruyama on the reverse SDE"))
register_predictor(PredictorSpec("ancestral", ancestral_predictor, "ancestral sampling (eq. 47)"))
register_corrector(CorrectorSpec("langevin", langevin_corrector, "Langevin with target SNR (Alg. 4)"))
register_corrector(CorrectorSpec("none", None, "no corrector (predictor only)"))

ETA = Option("eta", "float", "DDIM noise scale η (0: deterministic, 1: DDPM-like)", 0.0, low=0.0, high=1.0)


def _pc_nfe(steps: int, o: Mapping[str, Any]) -> int:
    return steps * (1 + (int(o["n_corrector"]) if get_corrector(o["corrector"]).fn is not None else 0))


def _langevin_nfe(steps: int, o: Mapping[str, Any]) -> int:
    return steps * int(o["n_inner"]) + int(int(o["denoise"]) > 0)


register_sampler(SamplerSpec(
    "ddpm", ddpm_chain, help="ancestral sampling (Ho et al. 2020, Alg. 2)",
    options=(Option("variance", "str", "DDPM reverse variance: posterior β̃_t or forward β_t", "posterior",
                    choices=("posterior", "forward")),)))
register_sampler(SamplerSpec("ddim", ddim_chain, options=(ETA,), help="DDIM (Song et al. 2021a, eq. 12)"))
register_sampler(SamplerSpec(
    "annealed_langevin", annealed_langevin_chain, nfe=_langevin_nfe,
    help="annealed Langevin dynamics (Song & Ermon 2019, Alg. 1)",
    options=(Option("step_lr", "float", "annealed Langevin step ε at the last level (0: 0.2 σ_L², scaled to the grid)",
                    0.0, low=0.0),
             Option("n_inner", "int", "annealed Langevin steps per noise level", 5, low=1),
             Option("denoise", "int", "annealed Langevin final Tweedie denoising step (1) or not (0)", 1,
                    low=0, high=1))))
register_sampler(SamplerSpec(
    "pc", pc_chain, nfe=_pc_nfe, help="predictor–corrector (Song et al. 2021, Alg. 1–5)",
    options=(Option("predictor", "str", "PC predictor", "reverse_diffusion", choices=tuple(_PREDICTORS)),
             Option("corrector", "str", "PC corrector", "langevin", choices=tuple(_CORRECTORS)),
             Option("snr", "float", "PC Langevin corrector target signal-to-noise ratio r", 0.16, low=0.0,
                    low_open=True),
             Option("n_corrector", "int", "PC corrector steps per noise level", 1, low=0),
             Option("norms", "str", "PC corrector step norms: batch means (reference code) or per example", "batch",
                    choices=("example", "batch")))))
register_sampler(SamplerSpec("euler", euler_chain, deterministic=True,
                             help="Euler on the probability-flow ODE (Karras et al. 2022)"))
register_sampler(SamplerSpec("heun", heun_chain, deterministic=True, nfe=lambda steps, o: 2 * steps - 1,
                             help="Heun on the probability-flow ODE (Karras et al. 2022, Alg. 1)"))
register_sampler(SamplerSpec("dpm_solver_2m", dpm_solver_2m_chain, deterministic=True,
                             help="DPM-Solver++(2M) (Lu et al. 2022, Alg. 2)"))

# η of the ancestral / SDE samplers: not DDIM's --eta (whose default, model.eta = 0, would make them ODE samplers)
ANCESTRAL_ETA = Option("ancestral_eta", "float",
                       "noise scale η of the ancestral and SDE samplers (0: their ODE sampler, 1: fully ancestral)",
                       1.0, low=0.0, high=1.0)
register_sampler(SamplerSpec("euler_ancestral", euler_ancestral_chain, options=(ANCESTRAL_ETA,),
                             help="Euler ancestral on the probability-flow ODE in σ/α (σ_down/σ_up split with η)"))
register_sampler(SamplerSpec(
    "edm_stochastic", edm_stochastic_chain, nfe=lambda steps, o: 2 * steps - 1,
    help="EDM stochastic sampler (Karras et al. 2022, Alg. 2)",
    options=(Option("s_churn", "float", "EDM S_churn: total churn, γ_i = min(S_churn/N, √2 − 1)", 40.0, low=0.0),
             Option("s_tmin", "float", "EDM S_tmin: churn only where σ/α >= S_tmin", 0.05, low=0.0),
             Option("s_tmax", "float", "EDM S_tmax: churn only where σ/α <= S_tmax", 50.0, low=0.0),
             Option("s_noise", "float", "scale of the added noise (EDM S_noise of the churn; dpmpp_3m_sde: of its "
                    "SDE noise, default 1 there)", 1.003, low=0.0))))
register_sampler(SamplerSpec("dpmpp_2m_sde", dpmpp_2m_sde_chain, options=(ANCESTRAL_ETA,),
                             help="DPM-Solver++(2M) SDE, midpoint variant (Lu et al. 2022b)"))
register_sampler(SamplerSpec(
    "lms", lms_chain, deterministic=True, help="linear multistep (Adams–Bashforth) on the probability-flow ODE in σ/α",
    options=(Option("lms_order", "int", "linear multistep order", LMS_MAX_ORDER, low=1, high=LMS_MAX_ORDER),)))


# The rest of the zoo lives in its own modules, which register themselves (they import this module, which is
# complete by now): DPM-Solver++(2S) ancestral, DPM-Solver++(3M) SDE and UniPC; restart sampling and the
# adaptive Dormand–Prince solver; DEIS (tAB).
from gm_jax.diffusion import samplers_deis, samplers_multistep, samplers_ode  # noqa: E402,F401

__all__ = [
    "Chain", "CorrectorSpec", "PredictorSpec", "SamplerSpec", "all_sampler_options", "ancestral_split",
    "ancestral_step", "churn_gamma", "ddim_encode", "ddim_step", "get_corrector", "get_predictor", "get_sampler",
    "langevin_step", "level_at", "lms_coefficients", "prior_sample", "register_corrector", "register_predictor",
    "register_sampler", "run_chain", "sampler_names", "samplers_taking", "start",
]
