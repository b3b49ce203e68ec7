"""Distance to the data law against NFE for every registered sampler, driven by the exact score of a
32-dimensional Gaussian mixture (issue 18's test bed).

The measure is the sliced 2-Wasserstein distance from the samples to the mixture itself
(:func:`gm_jax.bench.exact_w2.sliced_w2_to_mixture`, the same fixed directions for every run). Its
Monte-Carlo floor is the distance of as many exact i.i.d. draws: no sampler of i.i.d. samples can be
expected below it, so ``ratio = SW2 / floor`` is the figure of merit (1 = as good as exact draws).

Three sources of error are kept apart (issue 18, "study why"):

* the starting law at the first grid point (α₀, σ₀): ``prior='gaussian'`` is the usual N(0, σ₀² I);
  ``'moment_matched'`` is N(α₀ m, α₀² C + σ₀² I) with m, C the data mean and covariance: the Gaussian
  with the first two moments of the true marginal p_{t₀} (a trained model can estimate m and C from its
  training set); ``'exact'`` draws x₀ from the mixture and noises it, the true marginal p_{t₀} itself —
  then only the solver's error remains;
* discretization: NFE from 5 to 200 on one grid;
* stochasticity: deterministic solvers against ancestral/SDE/Restart ones on the same grid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.bench.exact_w2 import sliced_w2_to_mixture, uniform_directions
from gm_jax.core.errors import check_choice, require
from gm_jax.core.rng import per_example_normal
from gm_jax.diffusion import gmm as gmm_lib
from gm_jax.diffusion.family import configured_sampler, model_defaults
from gm_jax.diffusion.samplers import run_chain
from gm_jax.diffusion.schedules import Grid, discrete_schedule, make_grid, make_sde

PRIORS = ("gaussian", "moment_matched", "exact")
STUDY_GRIDS = ("edm", "discrete")


def mixture_32d(dim: int = 32, components: int = 8, seed: int = 0) -> gmm_lib.GaussianMixture:
    """A fixed, well-conditioned but non-trivial mixture in ``dim`` dimensions: means μ_k ~ N(0, 0.25 I)
    (pairwise distances ≈ 2, the scale of data in [−1, 1]), covariances Q_k diag(λ) Q_kᵀ with a random
    rotation Q_k and eigenvalues log-spaced in [0.005, 0.1] (standard deviations 0.07–0.32), unequal
    weights from a Dirichlet(2) draw. Everything from ``numpy.random.default_rng(seed)``."""
    require(dim >= 2 and components >= 1, f"need dim >= 2 and components >= 1, got {dim}, {components}")
    rng = np.random.default_rng(seed)
    means = 0.5 * rng.standard_normal((components, dim))
    lam = np.geomspace(0.005, 0.1, dim)
    covs = []
    for _ in range(components):
        q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
        q = q * np.sign(np.diag(r))[None]
        covs.append((q * rng.permutation(lam)[None]) @ q.T)
    weights = rng.dirichlet(np.full(components, 2.0))
    return gmm_lib.gaussian_mixture(weights, means, np.stack(covs))


def study_grid(name: str, n_steps: jax.Array, max_steps: int) -> Grid:
    """'edm': the VP SDE (β from 0.1 to 20) on Karras et al.'s ρ = 7 grid of σ/α from 80 to 0.002;
    'discrete': the linear-β DDPM schedule (T = 1000) on the trailing index grid."""
    check_choice("grid", name, STUDY_GRIDS)
    if name == "edm":
        return make_grid("edm", make_sde("vp"), n_steps, max_steps)
    return make_grid("discrete", discrete_schedule("linear", 1000), n_steps, max_steps)


def start_sample(gmm: gmm_lib.GaussianMixture, prior: str, key: jax.Array, grid: Grid, num: int) -> jax.Array:
    """x at the first grid point (α₀, σ₀) from ``prior`` (module docstring); per-example keyed, so row i
    does not depend on ``num``."""
    check_choice("prior", prior, PRIORS)
    a, s = grid.alpha[0], grid.sigma[0]
    k_z, k_x = jax.random.split(key)
    z = per_example_normal(k_z, 0, (num, gmm.dim))
    if prior == "gaussian":
        return s * z
    if prior == "moment_matched":
        mean, cov = gmm_lib.moments(gmm)
        chol = jnp.linalg.cholesky(a**2 * cov + s**2 * jnp.eye(gmm.dim))
        return a * mean + z @ chol.T
    return a * gmm_lib.sample(gmm, k_x, num) + s * z


def study_options(sampler: str, **overrides: Any) -> dict[str, Any]:
    """The sampler's defaults as the diffusion family configures them, with ``overrides``."""
    return {**configured_sampler(model_defaults(), sampler).defaults(), **overrides}


def steps_for_budget(sampler: str, budget: int, **options: Any) -> int | None:
    """The most grid steps whose defined NFE is at most ``budget`` (``None`` if even one step costs more)."""
    spec = configured_sampler(model_defaults(), sampler)
    best = None
    for steps in range(1, budget + 1):
        if spec.expected_nfe(steps, **options) <= budget:
            best = steps
    return best


def compiled_study_chain(gmm: gmm_lib.GaussianMixture, sampler: str, grid_name: str, prior: str, num: int,
                         max_steps: int, **options: Any) -> Callable[[jax.Array, jax.Array], tuple]:
    """jit of ``(key, steps) -> (x_0 [num, D], nfe)``: the start from ``prior``, then ``sampler``'s chain with
    the exact mixture denoiser; ``steps`` is an array (one compile per sampler, prior and grid)."""
    spec = configured_sampler(model_defaults(), sampler)
    den = gmm_lib.exact_denoiser(gmm)
    opts = study_options(sampler, **options)

    @jax.jit
    def run(key: jax.Array, steps: jax.Array) -> tuple[jax.Array, jax.Array]:
        grid = study_grid(grid_name, steps, max_steps)
        k_start, k_chain = jax.random.split(key)
        x_T = start_sample(gmm, prior, k_start, grid, num)
        x, info = run_chain(spec.chain(den, k_chain, x_T, grid, 0, **opts), grid)
        return x, info["nfe"]

    return run


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """What one study measures: ``num`` samples × ``seeds`` seeds per point, ``projections`` fixed
    directions, NFE ``budgets``, and the grid; ``max_steps`` is the static grid length."""

    num: int = 20000
    seeds: int = 3
    projections: int = 128
    budgets: tuple[int, ...] = (5, 10, 20, 50, 100, 200)
    grid: str = "edm"
    max_steps: int = 200


def sw2_floor(gmm: gmm_lib.GaussianMixture, cfg: StudyConfig, dirs: np.ndarray) -> dict[str, Any]:
    """SW2 of ``cfg.num`` exact draws to the mixture, per seed (the Monte-Carlo floor)."""
    w, mu, cov = (np.asarray(a, np.float64) for a in (gmm.weights, gmm.means, gmm.covs))
    vals = [sliced_w2_to_mixture(np.asarray(gmm_lib.sample(gmm, jax.random.key(10_000 + i), cfg.num)), w, mu,
                                 cov, dirs) for i in range(cfg.seeds)]
    return summary(vals)


def summary(vals: Sequence[float]) -> dict[str, Any]:
    """Mean, standard error (``None`` for one value) and the values."""
    v = np.asarray(vals, np.float64)
    se = float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None
    return {"mean": float(np.mean(v)), "se": se, "values": [float(a) for a in v]}


def ratio_to_floor(sw2: dict[str, Any], floor: dict[str, Any]) -> dict[str, float | None]:
    """``ratio`` = mean SW2 / mean floor and its standard error by the delta method (the two are
    independent): ratio × sqrt((se/mean)² + (se_floor/mean_floor)²)."""
    ratio = sw2["mean"] / floor["mean"]
    if sw2["se"] is None or floor["se"] is None:
        return {"ratio": ratio, "ratio_se": None}
    rel = np.hypot(sw2["se"] / sw2["mean"], floor["se"] / floor["mean"])
    return {"ratio": ratio, "ratio_se": float(ratio * rel)}


def sampler_curve(gmm: gmm_lib.GaussianMixture, sampler: str, prior: str, cfg: StudyConfig, dirs: np.ndarray,
                  **options: Any) -> list[dict[str, Any]]:
    """One record per NFE budget: the steps that fit it, the NFE actually made, SW2 per seed. Seed i's key
    is the same for every sampler (common random numbers: with ``prior='gaussian'`` they share x_T)."""
    run = compiled_study_chain(gmm, sampler, cfg.grid, prior, cfg.num, cfg.max_steps, **options)
    records = []
    for budget in cfg.budgets:
        steps = steps_for_budget(sampler, budget, **study_options(sampler, **options))
        if steps is None or steps > cfg.max_steps:
            continue
        records.append({"sampler": sampler, "prior": prior, "grid": cfg.grid, "budget": budget, "steps": steps,
                        "options": dict(options), **_seeded_distances(gmm, run, steps, cfg.seeds, dirs)})
    return records


def _seeded_distances(gmm: gmm_lib.GaussianMixture, run: Callable, steps: int, seeds: int, dirs: np.ndarray
                      ) -> dict[str, Any]:
    """SW2 of ``run(key(i), steps)`` for i < ``seeds`` (NaN where a sample is not finite) and the NFE made
    (the largest over the seeds: an adaptive solver's count depends on the draw)."""
    w, mu, cov = (np.asarray(a, np.float64) for a in (gmm.weights, gmm.means, gmm.covs))
    vals, nfes = [], []
    for i in range(seeds):
        x, nfe = run(jax.random.key(i), jnp.int32(steps))
        x = np.asarray(x, np.float64)
        vals.append(sliced_w2_to_mixture(x, w, mu, cov, dirs) if np.all(np.isfinite(x)) else float("nan"))
        nfes.append(int(nfe))
    return {"nfe": max(nfes), "sw2": summary(vals)}


def adaptive_curve(gmm: gmm_lib.GaussianMixture, sampler: str, prior: str, cfg: StudyConfig, dirs: np.ndarray,
                   tolerances: Sequence[float]) -> list[dict[str, Any]]:
    """An adaptive solver (``spec.adaptive``, e.g. 'dopri5') at rtol = atol = each of ``tolerances``, one
    adaptive solve over the whole grid (2 grid points): its NFE is what the solver made."""
    require(configured_sampler(model_defaults(), sampler).adaptive, f"sampler {sampler!r} is not adaptive")
    records = []
    for tol in tolerances:
        run = compiled_study_chain(gmm, sampler, cfg.grid, prior, cfg.num, cfg.max_steps, rtol=tol, atol=tol)
        records.append({"sampler": sampler, "prior": prior, "grid": cfg.grid, "budget": None, "steps": 2,
                        "options": {"rtol": tol, "atol": tol}, **_seeded_distances(gmm, run, 2, cfg.seeds, dirs)})
    return records


def distance_vs_nfe(samplers: Sequence[str], priors: Sequence[str] = ("gaussian",), cfg: StudyConfig | None = None,
                    gmm: gmm_lib.GaussianMixture | None = None, variants: dict[str, dict[str, Any]] | None = None,
                    tolerances: Sequence[float] = (1e-2, 1e-3, 1e-4), floor_seeds: int | None = None,
                    progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The study: the floor (over ``floor_seeds`` seeds, default ``cfg.seeds``), then every sampler × prior
    curve (adaptive solvers at ``tolerances``; ``variants``: label → {"sampler", "options"}, e.g. a tuned
    churn), each record with ``ratio = SW2 / floor``."""
    cfg = cfg or StudyConfig()
    gmm = gmm if gmm is not None else mixture_32d()
    dirs = uniform_directions(cfg.projections, gmm.dim, seed=1)
    floor = sw2_floor(gmm, dataclasses.replace(cfg, seeds=floor_seeds or cfg.seeds), dirs)
    runs = [(s, s, {}) for s in samplers] + [(label, v["sampler"], v.get("options", {}))
                                             for label, v in (variants or {}).items()]
    records = []
    for prior in priors:
        for label, sampler, options in runs:
            if progress:
                progress(f"{label} / {prior}")
            if configured_sampler(model_defaults(), sampler).adaptive:
                curve = adaptive_curve(gmm, sampler, prior, cfg, dirs, tolerances)
            else:
                curve = sampler_curve(gmm, sampler, prior, cfg, dirs, **options)
            for rec in curve:
                rec.update(label=label, **ratio_to_floor(rec["sw2"], floor))
                records.append(rec)
    return {"config": dataclasses.asdict(cfg), "dim": gmm.dim, "components": int(gmm.weights.shape[0]),
            "floor": floor, "records": records}
