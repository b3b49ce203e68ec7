"""Sampler-speed benchmark: compile time, steady-state time, NFE, overhead over the network's own cost,
the fused-vs-Python-stepped ratio, recompilations, and quality per NFE.

Definitions (one record per network × batch × sampler × steps):

* ``wall_s``: median time of one call of the compiled sampler (the whole chain, one ``lax.scan``).
* ``forward_call_s``: median time of one compiled call of the denoiser the sampler uses (same network,
  batch, guidance) — includes one dispatch. ``forward_s``: the denoiser's own cost, amortized over
  ``forward_reps`` chained evaluations inside one compiled ``fori_loop`` (no dispatch per evaluation).
* ``overhead_ratio = wall_s / (NFE × forward_s)``: how close the sampler comes to its physical limit of NFE
  network evaluations (1 = no cost beyond the network). ``overhead_ratio_call`` uses ``forward_call_s``
  instead, i.e. the issue's "NFE × one compiled network forward" including that forward's dispatch.
* ``python_wall_s``: the same sampler stepped from a Python loop, one compiled step per call (how
  diffusers and k-diffusion drive their schedulers). It runs the very step function of the fused sampler:
  every registered sampler is a :class:`gm_jax.diffusion.samplers.Chain` (initial carry and step), which the
  fused sampler scans and :meth:`ChainSpec.python_stepped` calls once per step, so both compute the same
  numbers (``python_max_abs_diff``). ``fused_speedup = python_wall_s / wall_s``.
* ``recompiles``: compilations caused by changing steps, η and the guidance scale after the first call,
  counted by a trace counter in the jitted function and by JAX's backend-compile event.

Per-step cost beyond the network (issue 18; one record per registered sampler, :func:`per_step_costs`): the
sampler with a negligible denoiser (x̂_0 = x/2) at batch 64 × 28 × 28 × 1; ``step_s`` is the difference of
the chain's time at two step counts in one compiled chain (compilation, dispatch and the fixed parts cancel)
divided by their difference, plus the cost of one unused slot of the static grid (``padding_s``: every
sampling call pays it for each step below ``model.max_sample_steps``); next to it the Python-stepped
chain's per-step cost, one step's per-example noise draw timed the same way (``noise_step_s``), the ratio
stochastic step ÷ (its draws × one draw), and diffusers' per-step cost of the matching schedulers when torch
and diffusers are installed. :func:`prng_costs` times the draw with each of JAX's key implementations and
checks that example i's noise does not depend on the batch size it is drawn in.

Quality per NFE uses the exact score of a 2-D Gaussian mixture (:mod:`gm_jax.diffusion.gmm`): sliced
Wasserstein distance (Rabin et al. 2011) and RBF-MMD² (Gretton et al. 2012) between samples and exact
draws of the mixture, with DDPM ancestral at 1000 steps as the reference, and the same distance between two
exact draws as the sampling-noise floor. With a trained run, FID (Heusel et al. 2017) against NFE.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.bench.timing import (
    CompileWindow,
    TraceCounter,
    compile_seconds,
    difference_per_unit,
    time_call,
    time_interleaved,
)
from gm_jax.core.errors import check_choice, require
from gm_jax.core.options import option_names
from gm_jax.diffusion import gmm as gmm_lib
from gm_jax.diffusion.family import configured_sampler, model_defaults
from gm_jax.diffusion.networks import TimeConditionedMLP
from gm_jax.diffusion.parametrization import make_denoiser
from gm_jax.diffusion.samplers import Chain, prior_sample, run_chain, sampler_names
from gm_jax.diffusion.schedules import discrete_schedule, make_grid
from gm_jax.metrics.toy import rbf_mmd2, sliced_wasserstein
from gm_jax.nn.unet import UNet, unet_config

SAMPLER_NAMES = sampler_names()

# name: (kind, options, per-example shape). 'unet_small' is the default Fashion-MNIST U-Net
# (experiments/configs/ddpm_fashion_mnist.py); 'unet_tiny' the one of ddpm_fashion_mnist_cpu.py.
NETS: dict[str, tuple[str, dict, tuple[int, ...]]] = {
    "mlp2d_tiny": ("mlp", {"hidden": (16,), "emb_dim": 16}, (2,)),
    "mlp2d": ("mlp", {"hidden": (128, 128, 128), "emb_dim": 64}, (2,)),
    "unet_tiny": ("unet", {"name": "tiny"}, (28, 28, 1)),
    "unet_small": ("unet", {"name": "small"}, (28, 28, 1)),
}


def expected_nfe(sampler: str, steps: int, **options: Any) -> int:
    """The number of network evaluations ``sampler`` is defined to make for ``steps`` grid steps, from its
    registry entry, with the family's default options (``options`` override them): DDPM, DDIM, Euler,
    DPM-Solver++(2M): N; Heun (Karras et al. 2022, Alg. 1, no correction into σ = 0): 2N − 1;
    predictor–corrector: N (1 + corrector steps); annealed Langevin: N × inner steps (+1 for the final
    denoising step)."""
    return configured_sampler(model_defaults(), sampler).expected_nfe(steps, **options)


@dataclasses.dataclass
class NetSetup:
    """A randomly initialized (or given) network and what the samplers need around it."""

    name: str
    module: Any
    params: Any
    shape: tuple[int, ...]
    num_classes: int
    num_params: int

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3


def make_net(name: str, seed: int = 0, num_classes: int = 10) -> NetSetup:
    """Network ``name`` of :data:`NETS`, class-conditional (``num_classes`` + the null label of
    classifier-free guidance), with random initial parameters: timings do not need trained weights."""
    check_choice("network", name, NETS)
    kind, opts, shape = NETS[name]
    if kind == "mlp":
        module = TimeConditionedMLP(tuple(opts["hidden"]), int(opts["emb_dim"]), num_classes)
    else:
        module = UNet(**unet_config(opts["name"], num_classes=num_classes, dropout=0.0))
    x = jnp.zeros((1,) + shape)
    params = module.init(jax.random.key(seed), x, jnp.zeros((1,)), jnp.zeros((1,), jnp.int32))["params"]
    count = int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))
    return NetSetup(name, module, params, shape, num_classes, count)


def sampler_options(sampler: str, eta: jax.Array) -> dict[str, Any]:
    """The options ``sampler`` runs with in the bench: the diffusion family's defaults (from
    ``model_defaults()``), η given as an array where the sampler takes it."""
    opts = configured_sampler(model_defaults(), sampler).defaults()
    return {**opts, "eta": eta} if "eta" in opts else opts


def _denoiser(setup: NetSetup, params: Any, guidance: jax.Array, label: jax.Array):
    """ε-network → x̂_0 with classifier-free guidance (one batched pass over [cond; null]), x̂_0 clipped to
    [−1, 1] for images — the denoiser of ``gm_jax.diffusion.family`` for a class-conditional DDPM."""
    net = lambda x, t, lab: setup.module.apply({"params": params}, x, t, lab, False)
    den = make_denoiser("eps", net, label, guidance, setup.num_classes, 1.0)
    if setup.is_image:
        return lambda x, t, a, s: jnp.clip(den(x, t, a, s), -1.0, 1.0)
    return den


class ChainSpec:
    """One sampler on one network at one batch: builds the fused chain, the Python-stepped chain and the
    denoiser forward, all as functions of ``(params, key, steps, eta, guidance, label)`` arrays."""

    def __init__(self, setup: NetSetup, sampler: str, batch: int, num_timesteps: int = 1000,
                 max_steps: int = 1000, denoiser_factory: Callable | None = None):
        require(batch >= 1, f"batch must be >= 1, got {batch}")
        self.sampler_spec = configured_sampler(model_defaults(), sampler)
        self.setup, self.sampler, self.batch = setup, sampler, int(batch)
        self.process = discrete_schedule("linear", int(num_timesteps))
        self.max_steps = min(int(max_steps), self.process.num_steps)
        self.denoiser_factory = denoiser_factory or (lambda p, g, lab: _denoiser(setup, p, g, lab))

    def chain(self, params, key, steps, eta, guidance, label) -> tuple[Chain, Any]:
        """(the sampler's chain, its grid) for these arrays: prior draw, guided denoiser, default options."""
        grid = make_grid("discrete", self.process, steps, self.max_steps)
        den = self.denoiser_factory(params, guidance, label)
        k_prior, k_chain = jax.random.split(key)
        x_T = prior_sample(k_prior, grid, (self.batch,) + self.setup.shape)
        opts = sampler_options(self.sampler, eta)
        return self.sampler_spec.chain(den, k_chain, x_T, grid, 0, **opts), grid

    def fused(self) -> tuple[Any, TraceCounter]:
        """jit of the whole chain (one scan, :func:`gm_jax.diffusion.samplers.run_chain`) → (x_0, nfe), and
        its trace counter."""

        def run(params, key, steps, eta, guidance, label):
            den_chain, grid = self.chain(params, key, steps, eta, guidance, label)
            x, info = run_chain(den_chain, grid)
            return x, info["nfe"]

        counter = TraceCounter(run)
        return jax.jit(counter), counter

    def python_stepped(self) -> tuple[Any, Any]:
        """(jit of the chain's initial carry, jit of one step ``(…, carry, k) -> carry``): the very step the
        fused chain scans, driven from Python. The carry is ``(x, nfe, extra)``."""
        init = jax.jit(lambda p, key, n, e, g, lab: self.chain(p, key, n, e, g, lab)[0].init)
        step = jax.jit(lambda p, key, n, e, g, lab, carry, k: self.chain(p, key, n, e, g, lab)[0].step(carry, k))
        return init, step

    def forward(self) -> tuple[Any, Any]:
        """(jit of one denoiser call, jit of ``reps`` chained denoiser calls in one loop, ``reps`` an array)
        at grid level ``num_timesteps // 10`` (α close to 1, so chained outputs stay finite)."""
        idx = self.process.num_steps // 10
        alpha, sigma = (float(v) for v in self.process.alpha_sigma(jnp.asarray(idx)))
        t = jnp.float32(idx)

        def one(params, x, guidance, label):
            return self.denoiser_factory(params, guidance, label)(x, t, alpha, sigma)

        def loop(params, x, guidance, label, reps):
            den = self.denoiser_factory(params, guidance, label)
            return jax.lax.fori_loop(0, reps, lambda i, x_: den(x_, t, alpha, sigma), x)

        return jax.jit(one), jax.jit(loop)


def forward_cost(setup: NetSetup, batch: int, guidance: float = 2.0, repeats: int = 5, num_timesteps: int = 1000
                 ) -> dict[str, float]:
    """:func:`measure_forward` of ``setup``'s guided denoiser at ``batch`` on a standard-normal input."""
    spec = ChainSpec(setup, "ddpm", batch, num_timesteps, num_timesteps)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((batch,) + setup.shape), jnp.float32)
    label = np.arange(batch, dtype=np.int32) % max(setup.num_classes, 1)
    return measure_forward(spec, x, guidance, label, repeats=max(repeats, 5))


def measure_forward(spec: ChainSpec, x: jax.Array, guidance: float, label: np.ndarray, repeats: int = 5,
                    target_s: float = 0.05, max_reps: int = 4096) -> dict[str, float]:
    """The denoiser's cost: ``forward_call_s`` (median of single compiled calls, dispatch included) and
    ``forward_s`` (median time of a compiled loop of ``reps`` chained calls ÷ reps, with reps chosen so
    that one loop takes about ``target_s``; the trip count is an array, so calibrating never recompiles)."""
    one, loop = spec.forward()
    params = spec.setup.params
    fargs = (params, x, np.float32(guidance), label)
    _, compile_s = compile_seconds(one, *fargs)
    compile_seconds(loop, *fargs, np.int32(1))
    call = time_call(lambda: one(*fargs), repeats=repeats, min_total_s=0.2)["median_s"]
    per = time_call(lambda: loop(*fargs, np.int32(8)), repeats=3)["median_s"] / 8
    reps = int(min(max(8, target_s / max(per, 1e-9)), max_reps))
    looped = time_call(lambda: loop(*fargs, np.int32(reps)), repeats=repeats)
    return {"forward_s": looped["median_s"] / reps, "forward_min_s": looped["min_s"] / reps,
            "forward_cpu_s": looped["cpu_median_s"] / reps, "forward_call_s": call,
            "forward_compile_s": compile_s, "forward_reps": reps}


def _args(setup: NetSetup, params: Any, steps: int, eta: float, guidance: float, batch: int, seed: int = 0):
    label = np.arange(batch, dtype=np.int32) % max(setup.num_classes, 1)
    return (params, jax.random.key(seed), np.int32(steps), np.float32(eta), np.float32(guidance), label)


def run_python_stepped(init: Any, step: Any, args: tuple) -> tuple[jax.Array, jax.Array]:
    """Drive the sampler from Python: ``carry = init(*args)``, then ``steps`` calls of the compiled step."""
    carry = init(*args)
    for k in range(int(args[2])):
        carry = step(*args, carry, np.int32(k))
    return carry[0], carry[1]


def bench_chain(setup: NetSetup, sampler: str, batch: int, steps_list: Sequence[int], repeats: int = 3,
                eta: float = 0.0, guidance: float = 2.0, python_baseline: bool = True, min_total_s: float = 0.2,
                num_timesteps: int = 1000, max_steps: int = 1000, forward: dict[str, float] | None = None
                ) -> list[dict[str, Any]]:
    """Records for one network × sampler × batch over ``steps_list`` (one compilation for all of them).
    ``forward``: the :func:`forward_cost` of this network and batch if already measured (it does not
    depend on the sampler)."""
    spec = ChainSpec(setup, sampler, batch, num_timesteps, max_steps)
    for s in steps_list:
        require(1 <= int(s) <= spec.max_steps, f"steps must be in [1, {spec.max_steps}], got {s}")
    params = setup.params
    fused, counter = spec.fused()
    first = _args(setup, params, steps_list[0], eta, guidance, batch)
    _, compile_s = compile_seconds(fused, *first)

    # recompilation check: change steps, eta and guidance after the first call
    jax.block_until_ready(fused(*first))
    traces0 = counter.count
    changed = [_args(setup, params, steps_list[-1], eta, guidance, batch),
               _args(setup, params, steps_list[0], 0.5, guidance, batch),
               _args(setup, params, steps_list[0], eta, 3.0, batch)]
    with CompileWindow() as window:
        for a in changed:
            jax.block_until_ready(fused(*a))
    recompiles, backend_compiles = counter.count - traces0, window.count

    fwd = forward or forward_cost(setup, batch, guidance, repeats, num_timesteps)
    forward = fwd["forward_s"]

    if python_baseline:
        init, step = spec.python_stepped()
        py_compile = compile_seconds(init, *first)[1]
        carry0 = init(*first)
        py_compile += compile_seconds(step, *first, carry0, np.int32(0))[1]

    records = []
    for steps in steps_list:
        args = _args(setup, params, steps, eta, guidance, batch)
        out = {}

        def call(args=args, out=out):
            out["x"], out["nfe"] = fused(*args)
            return out["x"]

        timing = time_call(call, repeats=repeats, min_total_s=min_total_s)
        nfe = int(out["nfe"])
        rec: dict[str, Any] = {
            "net": setup.name, "num_params": setup.num_params, "batch": batch, "sampler": sampler,
            "steps": int(steps), "eta": eta, "guidance": guidance, "dtype": "float32",
            "max_steps": spec.max_steps, "nfe": nfe, "nfe_expected": expected_nfe(sampler, int(steps)),
            "compile_s": compile_s, "wall_s": timing["median_s"], "wall_min_s": timing["min_s"],
            "wall_spread": timing["spread"], "repeats": timing["repeats"], "samples_per_s": batch / timing["median_s"],
            **fwd, "overhead_ratio": timing["median_s"] / (nfe * forward),
            "overhead_ratio_min": timing["min_s"] / (nfe * fwd["forward_min_s"]),
            "cpu_s": timing["cpu_median_s"],
            "overhead_ratio_cpu": timing["cpu_median_s"] / (nfe * fwd["forward_cpu_s"]),
            "overhead_ratio_call": timing["median_s"] / (nfe * fwd["forward_call_s"]),
            "recompiles": recompiles, "backend_compiles_on_change": backend_compiles,
            "weights": "random init (timings do not depend on trained weights)",
        }
        if python_baseline:
            py_out = {}

            def py_call(args=args, py_out=py_out):
                py_out["x"], py_out["nfe"] = run_python_stepped(init, step, args)
                return py_out["x"]

            py = time_call(py_call, repeats=repeats, min_total_s=min_total_s)
            rec.update(python_wall_s=py["median_s"], python_wall_min_s=py["min_s"], python_compile_s=py_compile,
                       fused_speedup=py["median_s"] / timing["median_s"], python_nfe=int(py_out["nfe"]),
                       python_cpu_s=py["cpu_median_s"], fused_speedup_cpu=py["cpu_median_s"] / timing["cpu_median_s"],
                       python_max_abs_diff=float(jnp.max(jnp.abs(py_out["x"] - out["x"]))))
        records.append(rec)
    return records


# ----------------------------------------------------------------------------------------------------------
# Quality per NFE with the exact score of a Gaussian mixture
# ----------------------------------------------------------------------------------------------------------


def benchmark_mixture() -> gmm_lib.GaussianMixture:
    """A 2-D mixture of 4 anisotropic Gaussians with unequal weights (modes at distance ~2, the scale of
    data in [−1, 1])."""
    means = np.array([[-1.2, -1.0], [1.2, -0.8], [0.0, 1.3], [1.4, 1.2]])
    covs = np.array([[[0.05, 0.03], [0.03, 0.05]], [[0.02, 0.0], [0.0, 0.08]],
                     [[0.09, -0.02], [-0.02, 0.02]], [[0.01, 0.0], [0.0, 0.01]]])
    return gmm_lib.gaussian_mixture(np.array([0.4, 0.3, 0.2, 0.1]), means, covs)


def quality_vs_nfe(samplers: Sequence[str], steps_list: Sequence[int], num: int = 2000, seed: int = 0,
                   reference_steps: int = 1000, num_projections: int = 256,
                   mixture: gmm_lib.GaussianMixture | None = None, seeds: int = 1, exact_projections: int = 64,
                   mmd_max: int = 4000) -> list[dict[str, Any]]:
    """Quality per NFE of each sampler driven by the exact mixture denoiser (linear DDPM schedule, T = 1000),
    with DDPM at ``reference_steps`` (the reference point) and exact draws (the floor of each estimate).

    * ``sliced_w2`` / ``mmd2`` (seed ``seed`` only): two-sample sliced 2-Wasserstein (``num_projections``
      random directions) and RBF-MMD² (on the first ``mmd_max`` samples: it is O(n²)) between ``num``
      samples and ``num`` exact draws.
    * ``sw2_true``: sliced W2 from the samples to the mixture itself (:mod:`gm_jax.bench.exact_w2`: no second
      sample, ``exact_projections`` fixed directions shared by every sampler), mean over ``seeds`` seeds with
      its standard error ``sw2_true_se``; ``sw2_true_diff_vs_ref`` (± ``_se``): the mean paired difference to
      DDPM-``reference_steps`` on the same seeds (each seed draws one prior x_T for every sampler: common random
      numbers); ``sw2_true_debiased`` = sqrt(max(E[SW²] − E[SW²_floor], 0)), the finite-sample bias of an exact
      draw removed (approximate: it treats the two as adding in quadrature)."""
    from gm_jax.bench.exact_w2 import sliced_w2_to_mixture, uniform_directions

    require(seeds >= 1, f"seeds must be >= 1, got {seeds}")
    gmm = mixture if mixture is not None else benchmark_mixture()
    setup = NetSetup("gmm_exact", None, None, (gmm.dim,), 0, 0)
    den = gmm_lib.exact_denoiser(gmm)
    w, mu, cov = (np.asarray(a, np.float64) for a in (gmm.weights, gmm.means, gmm.covs))
    dirs = uniform_directions(exact_projections, gmm.dim)
    truth = gmm_lib.sample(gmm, jax.random.key(seed + 1), num)
    key_sw = jax.random.key(seed + 2)
    m = min(num, mmd_max)

    def two_sample(x: jax.Array) -> dict[str, float]:
        return {"sliced_w2": float(sliced_wasserstein(x, truth, key_sw, num_projections)),
                "mmd2": float(rbf_mmd2(x[:m], truth[:m]))}

    floor_name = "exact draws (floor)"
    runs = [(floor_name, 0)] + [(s, n) for s in samplers for n in steps_list] + [("ddpm", reference_steps)]
    fused_by_sampler: dict[str, Any] = {}
    first: dict[tuple[str, int], dict[str, Any]] = {}
    per_seed: dict[tuple[str, int], list[float]] = {r: [] for r in runs}
    for i in range(seeds):
        s_i = seed + 1000 * i
        for sampler, steps in runs:
            if sampler == floor_name:
                x, nfe = gmm_lib.sample(gmm, jax.random.key(s_i + 3), num), 0
            else:
                if sampler not in fused_by_sampler:
                    spec = ChainSpec(setup, sampler, num, 1000, 1000, denoiser_factory=lambda p, g, lab: den)
                    fused_by_sampler[sampler] = spec.fused()[0]
                x, nfe = fused_by_sampler[sampler](None, jax.random.key(s_i), np.int32(steps), np.float32(0.0),
                                                   np.float32(1.0), np.zeros((num,), np.int32))
            finite = bool(jnp.all(jnp.isfinite(x)))
            per_seed[(sampler, steps)].append(sliced_w2_to_mixture(np.asarray(x), w, mu, cov, dirs) if finite
                                              else float("nan"))
            if i == 0:
                rec = {"sampler": sampler, "steps": int(steps), "nfe": int(nfe), "num": num, "finite": finite,
                       "reference": sampler == "ddpm" and steps == reference_steps}
                rec.update(two_sample(x) if finite else {"sliced_w2": float("nan"), "mmd2": float("nan")})
                first[(sampler, steps)] = rec
    ref = np.asarray(per_seed[("ddpm", reference_steps)])
    floor_sq = float(np.mean(np.square(per_seed[(floor_name, 0)])))
    records = []
    for run in runs:
        v = np.asarray(per_seed[run])
        se = (lambda a: float(np.std(a, ddof=1) / np.sqrt(len(a))) if len(a) > 1 else None)
        records.append({**first[run], "seeds": seeds, "exact_projections": exact_projections,
                        "mmd_num": m, "sw2_true": float(np.mean(v)), "sw2_true_se": se(v),
                        "sw2_true_per_seed": [float(a) for a in v],
                        "sw2_true_diff_vs_ref": float(np.mean(v - ref)), "sw2_true_diff_vs_ref_se": se(v - ref),
                        "sw2_true_debiased": float(np.sqrt(max(float(np.mean(v**2)) - floor_sq, 0.0)))})
    return records


def fid_vs_nfe(workdir: str, samplers: Sequence[str], steps_list: Sequence[int], num: int = 500,
               guidance: float = 1.0, seed: int = 0) -> list[dict[str, Any]]:
    """FID of a trained run's samples (class labels cycled 0..9) against its eval images, per sampler and
    number of steps, with the shipped feature network (:func:`gm_jax.train.quality.sample_quality`)."""
    import time

    from gm_jax.train.quality import sample_quality
    from gm_jax.train.workdir import load_workdir

    run, state = load_workdir(workdir)
    require("sampler" in option_names(run.family.sample_options),
            f"--workdir must hold a run whose family takes --sampler (e.g. diffusion), got {run.family.name!r}")
    ncls = run.pipeline.spec.num_classes or 0
    label = (np.arange(num) % ncls).astype(np.int32) if ncls and "label" in run.family.conditioning else None
    records = []
    for sampler in samplers:
        for steps in steps_list:
            t0 = time.perf_counter()
            given = run.family.check_sample_options({"sampler": sampler, "steps": int(steps), "guidance": guidance})
            report = sample_quality(run, state, ["fid"], num, seed, label=label, **given)
            records.append({"sampler": sampler, "steps": int(steps), "nfe": int(report["sampler_nfe"]),
                            "fid": report["metrics"]["fid"]["value"], "num": num, "guidance": guidance,
                            "train_step": int(state.step), "seconds_incl_compile": time.perf_counter() - t0})
    return records


# ----------------------------------------------------------------------------------------------------------
# Per-step cost beyond the network (negligible denoiser), the noise draw, PRNG implementations, diffusers
# ----------------------------------------------------------------------------------------------------------


def negligible_denoiser(params: Any, guidance: Any, label: Any) -> Callable:
    """x̂_0 = x/2 whatever (t, α, σ): a denoiser that costs one multiply, which XLA fuses into the sampler's
    own arithmetic, so a step's time is the sampler's cost beyond the network."""
    del params, guidance, label
    return lambda x, t, alpha, sigma: 0.5 * x


_NOISY_UNLESS_LAST = ("euler_ancestral", "dpmpp_2m_sde", "dpmpp_2s_ancestral", "dpmpp_3m_sde")


def noise_draws(sampler: str, steps: int, num_timesteps: int = 1000, **options: Any) -> tuple[int, bool]:
    """(per-example noise draws — calls of :func:`gm_jax.core.rng.per_example_normal` over the batch — that
    ``sampler`` makes in a chain of ``steps`` steps on the linear DDPM grid of ``num_timesteps`` with its
    bench options (``options`` override them), not counting the prior draw; whether the count is known).
    Read off the samplers' definitions in :mod:`gm_jax.diffusion.samplers`: DDPM one per step; DDIM one per
    step when η > 0; annealed Langevin ``n_inner`` per level; PC one for the predictor + ``n_corrector``;
    the ancestral / SDE solvers one per step but the step into σ = 0; EDM's stochastic sampler one per
    step with γ_i > 0 (:func:`gm_jax.diffusion.samplers.churn_gamma` on the grid); restart sampling
    ``restart_k`` at its restart point; deterministic samplers none. A stochastic sampler not listed here
    is counted as one per step, with ``known`` False."""
    from gm_jax.diffusion.samplers import churn_gamma, get_corrector

    spec = configured_sampler(model_defaults(), sampler)
    o = {**sampler_options(sampler, 0.0), **options}
    n = int(steps)
    if spec.deterministic:
        return 0, True
    if sampler == "ddpm":
        return n, True
    if sampler == "ddim":
        return (n if float(o["eta"]) > 0 else 0), True
    if sampler == "annealed_langevin":
        return n * int(o["n_inner"]), True
    if sampler == "pc":
        return n * (1 + (int(o["n_corrector"]) if get_corrector(o["corrector"]).fn is not None else 0)), True
    if sampler in _NOISY_UNLESS_LAST:
        return (n - 1 if float(o["ancestral_eta"]) > 0 else 0), True
    if sampler == "edm_stochastic":
        def churning(s_churn, s_tmin, s_tmax):  # one program, not dozens of eager ops
            grid = make_grid("discrete", discrete_schedule("linear", int(num_timesteps)), n, n)
            return jnp.sum(churn_gamma(grid.sigma[:n] / grid.alpha[:n], grid.n_steps, s_churn, s_tmin, s_tmax) > 0)

        return int(jax.jit(churning)(*(np.float32(o[k]) for k in ("s_churn", "s_tmin", "s_tmax")))), True
    if sampler == "restart":
        return (int(o["restart_k"]) if n >= 2 else 0), True
    return n, False


def noise_chain(draw: Callable, key: jax.Array, x0: jax.Array) -> Chain:
    """A chain whose step k only adds step k's per-example noise, drawn as the samplers draw it
    (``draw(fold_in(fold_in(key, k), 0), first_index = 0, shape)``, :func:`gm_jax.core.rng.per_example_normal`
    by default): its per-step time is the cost of one step's noise inside a compiled chain."""
    from gm_jax.diffusion.samplers import start

    def step(carry, k):
        x, nfe, extra = carry
        z = draw(jax.random.fold_in(jax.random.fold_in(key, k), 0), 0, x.shape)
        return x + z, nfe, extra

    return Chain(start(x0), step)


@functools.lru_cache(maxsize=32)
def _noise_fused(draw: Callable, batch: int, shape: tuple[int, ...], max_steps: int, num_timesteps: int):
    """jit of :func:`noise_chain` ``(key, steps) -> x`` (cached: the PRNG section reuses the per-step section's
    program; JAX's own cache tells key implementations and threefry modes apart)."""
    process = discrete_schedule("linear", int(num_timesteps))

    def run(key, steps):
        grid = make_grid("discrete", process, steps, max_steps)
        return run_chain(noise_chain(draw, key, jnp.zeros((batch,) + shape, jnp.float32)), grid)[0]

    return jax.jit(run)


def _step_record(times: list[dict[str, list[float]]], steps: tuple[int, int], padding: int) -> dict[str, float]:
    """``step_s`` (and ``step_median_s``, ``step_cpu_s``) from interleaved timings [chain(lo), chain(hi)]
    (+ [padded chain(hi)] when ``padding``): the marginal cost of one more step in one compiled chain
    (``marginal_step_s``) plus the cost of one unused slot of the static grid (``padding_s``), i.e. the cost
    of an executed step."""
    lo, hi = steps
    marginal = difference_per_unit(times[0], times[1], hi - lo)
    zero = {"min_s": 0.0, "median_s": 0.0, "cpu_s": 0.0}
    pad = difference_per_unit(times[1], times[2], padding) if padding else zero
    out = {"marginal_step_s": marginal["min_s"], "padding_s": pad["min_s"], "padding_median_s": pad["median_s"]}
    for k, name in (("min_s", "step_s"), ("median_s", "step_median_s"), ("cpu_s", "step_cpu_s")):
        out[name] = marginal[k] + pad[k]
    return out


class StepChains:
    """One sampler with :func:`negligible_denoiser` on the linear DDPM grid of ``num_timesteps`` at a fixed
    x_T (drawn on the host: the prior draw is a fixed cost, outside the timed programs): jit of the whole
    chain ``(key, x_T, steps) -> (x, nfe)`` for a static grid length, and the initial carry and the step of
    the same chain for driving it from Python (the very step the fused chain scans)."""

    def __init__(self, sampler: str, num_timesteps: int = 1000):
        self.sampler, self.spec = sampler, configured_sampler(model_defaults(), sampler)
        self.process = discrete_schedule("linear", int(num_timesteps))
        self.options = sampler_options(sampler, np.float32(0.0))

    def chain(self, key: jax.Array, x_T: jax.Array, steps: jax.Array, max_steps: int) -> tuple[Chain, Any]:
        grid = make_grid("discrete", self.process, steps, max_steps)
        return self.spec.chain(negligible_denoiser(None, None, None), key, x_T, grid, 0, **self.options), grid

    def fused(self, max_steps: int) -> Any:
        def run(key, x_T, steps):
            chain, grid = self.chain(key, x_T, steps, max_steps)
            x, info = run_chain(chain, grid)
            return x, info["nfe"]

        return jax.jit(run)

    def python_stepped(self, max_steps: int) -> Callable[[jax.Array, jax.Array, int], tuple[jax.Array, Any]]:
        """``run(key, x_T, steps) -> (x, nfe)``: the jitted initial carry, then ``steps`` calls of the jitted
        step from a Python loop (how diffusers and k-diffusion drive their schedulers)."""
        init = jax.jit(lambda key, x_T, n: self.chain(key, x_T, n, max_steps)[0].init)
        step = jax.jit(lambda key, x_T, n, carry, k: self.chain(key, x_T, n, max_steps)[0].step(carry, k))

        def run(key, x_T, steps):
            n = np.int32(steps)
            carry = init(key, x_T, n)
            for k in range(int(steps)):
                carry = step(key, x_T, n, carry, np.int32(k))
            return carry[0], carry[1]

        return run


def sampler_step_cost(sampler: str, batch: int = 64, shape: tuple[int, ...] = (28, 28, 1),
                      steps: tuple[int, int] = (2, 12), padding: int = 100, repeats: int = 7,
                      min_total_s: float = 0.1, python_baseline: bool = True, num_timesteps: int = 1000,
                      noise: bool = True) -> dict[str, Any]:
    """One sampler's per-step cost beyond the network with :func:`negligible_denoiser` at [batch, *shape]
    (:class:`StepChains`): ``step_s`` (:func:`_step_record`: the chain's time at ``steps[1]`` minus at
    ``steps[0]`` steps in one compiled chain of static length ``steps[1]``, divided by the difference —
    compilation, dispatch and the final step cancel — plus ``padding_s``, the cost of one unused slot of the
    static grid, from the same chain padded by ``padding`` slots); ``python_step_s``: the same difference for
    the chain driven from Python (one compiled step per call); ``step_nfe``: denoiser calls per step;
    ``noise_draws_per_step`` (:func:`noise_draws`); with ``noise``, ``noise_step_s``: one step's per-example
    noise draw (:func:`noise_chain`, marginal cost) timed in the same interleaved rounds."""
    lo, hi = (int(s) for s in steps)
    require(1 <= lo < hi and hi + padding <= num_timesteps, f"need 1 <= steps[0] < steps[1], got {steps}")
    chains = StepChains(sampler, num_timesteps)
    key = jax.random.key(0)
    x_T = jnp.asarray(np.random.default_rng(0).standard_normal((batch,) + tuple(shape)), jnp.float32)
    fused = [chains.fused(hi)] + ([chains.fused(hi + padding)] if padding else [])
    _, compile_s = compile_seconds(fused[0], key, x_T, np.int32(lo))
    out: dict[Any, Any] = {}

    def call(f, n, tag):
        def run():
            out[tag] = f(key, x_T, np.int32(n))
            return out[tag][0]
        return run

    calls = [call(fused[0], lo, lo), call(fused[0], hi, hi)] + ([call(fused[-1], hi, "pad")] if padding else [])
    if noise:  # one step's noise draw, timed in the same rounds: the ratio does not see the load drift
        from gm_jax.core.rng import per_example_normal

        draw = _noise_fused(per_example_normal, int(batch), tuple(shape), hi, int(num_timesteps))
        calls += [lambda: draw(key, np.int32(lo)), lambda: draw(key, np.int32(hi))]
    times = time_interleaved(calls, repeats=repeats, min_total_s=min_total_s)
    nfe = {n: int(out[n][1]) for n in (lo, hi)}
    draws = {n: noise_draws(sampler, n, num_timesteps) for n in (lo, hi)}
    rec: dict[str, Any] = {
        "sampler": sampler, "deterministic": chains.spec.deterministic, "batch": int(batch), "shape": list(shape),
        "steps_lo": lo, "steps_hi": hi, "padding": int(padding), "compile_s": compile_s,
        "step_nfe": (nfe[hi] - nfe[lo]) / (hi - lo), "nfe_lo": nfe[lo], "nfe_hi": nfe[hi],
        "noise_draws_per_step": (draws[hi][0] - draws[lo][0]) / (hi - lo), "noise_draws_known": draws[hi][1],
        "repeats": len(times[0]["wall"]), **_step_record(times, (lo, hi), padding),
        "finite": bool(jnp.all(jnp.isfinite(out[hi][0]))),
        "padded_max_abs_diff": float(jnp.max(jnp.abs(out["pad"][0] - out[hi][0]))) if padding else None}
    rec["stochastic"] = rec["noise_draws_per_step"] > 0
    if noise:
        d = difference_per_unit(times[-2], times[-1], hi - lo)
        rec.update(noise_step_s=d["min_s"], noise_step_median_s=d["median_s"], noise_step_cpu_s=d["cpu_s"])
    if python_baseline:
        py = chains.python_stepped(hi)
        py_times = time_interleaved([call(py, lo, ("py", lo)), call(py, hi, ("py", hi))], repeats=repeats,
                                    min_total_s=min_total_s)
        d = difference_per_unit(py_times[0], py_times[1], hi - lo)
        rec.update(python_step_s=d["min_s"], python_step_median_s=d["median_s"], python_step_cpu_s=d["cpu_s"],
                   python_max_abs_diff=float(jnp.max(jnp.abs(out[("py", hi)][0] - out[hi][0]))))
    return rec


def _ratio(a: float | None, b: float | None) -> float | None:
    """a ÷ b of two costs; None when either is missing or not positive (a difference of two timings can come
    out <= 0 under load, and is then no cost to divide)."""
    return a / b if a is not None and b is not None and a > 0 and b > 0 else None


def _diffusers_by_threads(d: dict[str, Any]) -> dict[str, Any]:
    """diffusers' per-step cost with torch on 1 thread and on the most threads measured (every core), the
    count of the faster, and the torch noise draw's cost at that count."""
    by = d.get("by_threads") or {}
    most = by[max(by, key=int)] if by else {}
    return {"diffusers_1thread_step_s": by.get("1", {}).get("step_s"),
            "diffusers_all_threads_step_s": most.get("step_s"), "diffusers_threads": d.get("torch_threads"),
            "diffusers_noise_draw_s": d.get("noise_draw_s")}


def _diffusers_status(recs: dict[str, dict[str, Any]]) -> str:
    """How diffusers' column was measured (versions, torch threads), for the report."""
    ok = [r for r in recs.values() if r.get("status") == "ok"]
    if not ok:
        return "measured: no scheduler ran" if recs else "measured: no registered sampler has a counterpart"
    r = ok[0]
    counts = " and ".join(r["by_threads"])
    return (f"measured with diffusers {r['diffusers_version']}, torch {r['torch_version']} on {counts} thread(s), "
            f"each scheduler at its faster count; the Python loop's cost per step less its ε = x/2 multiplies, "
            f"ε-prediction, trailing timesteps ({len(ok)} of {len(recs)} schedulers ran)")


def per_step_costs(samplers: Sequence[str] | None = None, batch: int = 64, shape: tuple[int, ...] = (28, 28, 1),
                   steps: tuple[int, int] = (2, 12), padding: int = 100, repeats: int = 7, min_total_s: float = 0.1,
                   python_baseline: bool = True, diffusers: bool = True, num_timesteps: int = 1000,
                   log: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Issue 18's per-step cost beyond the network for ``samplers`` (default: every registered one, read at
    call time): :func:`sampler_step_cost` of each with the cost of one step's noise draw timed in the same
    rounds (``noise``: its median, min and max over the samplers), and, when torch and diffusers are installed,
    diffusers' per-step cost of the matching schedulers (:func:`diffusers_step_costs`). Ratios per sampler:
    ``step_over_euler``, ``python_over_fused`` (Python-stepped ÷ fused), ``step_over_noise`` = step ÷ (draws
    per step × one draw; stochastic samplers), ``step_over_one_draw`` and ``fused_over_diffusers``.
    Returns ``{"noise": ..., "records": [...], "diffusers": {...}, "diffusers_status": ...}``."""
    import time

    names = tuple(samplers) if samplers else sampler_names()
    kw = dict(batch=batch, shape=tuple(shape), steps=tuple(steps), padding=padding, repeats=repeats,
              min_total_s=min_total_s, num_timesteps=num_timesteps)
    records = []
    for name in names:
        t0 = time.perf_counter()
        records.append(sampler_step_cost(name, python_baseline=python_baseline, **kw))
        if log:
            r = records[-1]
            log(f"bench samplers: per-step {name}: {1e6 * r['step_s']:.1f} µs (noise draw "
                f"{1e6 * r['noise_step_s']:.1f} µs) [{time.perf_counter() - t0:.0f} s]")
    torch_recs = diffusers_step_costs(names, **{k: kw[k] for k in ("batch", "shape", "steps", "repeats",
                                                                   "min_total_s")}) if diffusers else {}
    euler = next((r["step_s"] for r in records if r["sampler"] == "euler"), None)
    for r in records:
        d = torch_recs.get(r["sampler"], {})
        r.update(step_over_euler=_ratio(r["step_s"], euler),
                 python_over_fused=_ratio(r.get("python_step_s"), r["step_s"]),
                 step_over_one_draw=_ratio(r["step_s"], r["noise_step_s"]),
                 step_over_noise=_ratio(r["step_s"], r["noise_draws_per_step"] * r["noise_step_s"])
                 if r["stochastic"] else None,
                 diffusers_step_s=d.get("step_s"), fused_over_diffusers=_ratio(r["step_s"], d.get("step_s")),
                 **_diffusers_by_threads(d))
    draws = [r["noise_step_s"] for r in records]
    noise = {"noise_step_s": float(np.median(draws)), "noise_step_min_s": float(np.min(draws)),
             "noise_step_max_s": float(np.max(draws)),
             "noise_step_cpu_s": float(np.median([r["noise_step_cpu_s"] for r in records]))}
    status = ("off" if not diffusers else _diffusers_status(torch_recs) if diffusers_available()
              else "not measured: torch and diffusers are not installed (the optional extra: pip install '.[torch]')")
    return {"noise": noise, "records": records, "diffusers": torch_recs, "diffusers_status": status}


# gm_jax sampler: (diffusers scheduler class, its constructor options, its ``step`` options, whether its step
# draws noise — then it is passed a torch.Generator) for the samplers with a true counterpart in diffusers 0.42:
# the same update rule and order with the options the bench runs ours with (DDPM's posterior variance is
# diffusers' "fixed_small"; DDIM at η = 0; LMS of order 4; DEIS, UniPC (B2, with its corrector) and
# DPM-Solver++(3M) SDE of order 3). Each is built on the linear β schedule of T = 1000 with ε-prediction and
# "trailing" timesteps (our grid's spacing), x̂_0 not clipped (our negligible denoiser does not clip).
# No counterpart: DPM-Solver++(2S) ancestral (diffusers' singlestep solver draws no noise; KDPM2Ancestral is
# DPM-Solver-2), EDM's stochastic sampler (Heun with churn; diffusers' Euler churns with Euler steps), PC,
# annealed Langevin, restart sampling and the adaptive Dormand–Prince solver.
DIFFUSERS_SCHEDULERS: dict[str, tuple[str, dict[str, Any], dict[str, Any], bool]] = {
    "ddpm": ("DDPMScheduler", {"clip_sample": False, "variance_type": "fixed_small"}, {}, True),
    "ddim": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": True}, {"eta": 0.0}, False),
    "euler": ("EulerDiscreteScheduler", {}, {}, False),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}, {}, True),
    "heun": ("HeunDiscreteScheduler", {}, {}, False),
    "dpm_solver_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}, {},
                      False),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}, {},
                     True),
    "dpmpp_3m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}, {},
                     True),
    "lms": ("LMSDiscreteScheduler", {}, {"order": 4}, False),
    "unipc": ("UniPCMultistepScheduler", {"solver_order": 3, "solver_type": "bh2"}, {}, False),
    "deis": ("DEISMultistepScheduler", {"solver_order": 3, "algorithm_type": "deis"}, {}, False),
}
DIFFUSERS_COMMON: dict[str, Any] = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4,
                                    "beta_end": 0.02, "prediction_type": "epsilon", "timestep_spacing": "trailing"}


def diffusers_available() -> bool:
    """Whether torch and diffusers import (the optional ``torch`` extra)."""
    try:
        import diffusers  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def diffusers_scheduler(diffusers: Any, sampler: str) -> Any:
    """A fresh diffusers scheduler of ``sampler`` (:data:`DIFFUSERS_SCHEDULERS`, :data:`DIFFUSERS_COMMON`)."""
    name, opts, _, _ = DIFFUSERS_SCHEDULERS[sampler]
    return getattr(diffusers, name)(**DIFFUSERS_COMMON, **opts)


def _nchw(batch: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return (batch, shape[-1], *shape[:-1]) if len(shape) == 3 else (batch, *shape)


def diffusers_loop(diffusers: Any, torch: Any, sampler: str, x_T: Any,
                   model: Callable[[Any], Any] = lambda x: 0.5 * x) -> tuple[Callable[[int], Any], dict[int, int]]:
    """(``run(n)``: a diffusers sampling loop of ``n`` inference steps from ``x_T`` on the scheduler of
    ``sampler``, the model output (ε) being ``model`` of the scaled model input — diffusers' own per-step
    work plus one multiply per model call; ``calls``: model calls of the loop of ``n`` steps, filled in by run)."""
    _, _, step_opts, noisy = DIFFUSERS_SCHEDULERS[sampler]
    sched = diffusers_scheduler(diffusers, sampler)
    gen = torch.Generator().manual_seed(0)
    calls: dict[int, int] = {}

    def run(n: int) -> Any:
        sched.set_timesteps(int(n))
        calls[int(n)] = len(sched.timesteps)
        extra = {**step_opts, **({"generator": gen} if noisy else {})}
        x = x_T * sched.init_noise_sigma
        with torch.no_grad():
            for t in sched.timesteps:
                eps = model(sched.scale_model_input(x, t))
                x = sched.step(eps, t, x, **extra).prev_sample
        return x

    return run, calls


def _torch_repeat(op: Callable[[], Any]) -> Callable[[int], Any]:
    """``run(n)``: ``op`` called ``n`` times from a Python loop (its per-call cost by the difference method)."""
    def run(n: int) -> Any:
        for _ in range(n):
            y = op()
        return y

    return run


def _diffusers_threads(diffusers: Any, torch: Any, sampler: str, x_T: Any, steps: tuple[int, int],
                       repeats: int, min_total_s: float) -> dict[str, float]:
    """One scheduler at torch's current thread count: ``loop_step_s`` (the loop's marginal cost per step),
    ``model_call_s`` (one x/2 multiply in torch, timed in the same rounds), ``step_s`` = loop − model calls
    per step × model call (the scheduler alone, as our fused chain's x/2 costs nothing beyond its fusion),
    ``noise_draw_s`` (one torch.randn of the batch with a generator: what diffusers pays for a step's noise)."""
    lo, hi = steps
    run, calls = diffusers_loop(diffusers, torch, sampler, x_T)
    run(lo), run(hi)
    model = _torch_repeat(lambda: 0.5 * x_T)
    gen = torch.Generator().manual_seed(1)
    noise = _torch_repeat(lambda: torch.randn(x_T.shape, generator=gen))
    fns = [lambda: run(lo), lambda: run(hi), lambda: model(calls[lo]), lambda: model(calls[hi]),
           lambda: noise(lo), lambda: noise(hi)]
    with torch.no_grad():
        t = time_interleaved(fns, repeats=repeats, min_total_s=min_total_s)
    loop = difference_per_unit(t[0], t[1], hi - lo)
    model_call = difference_per_unit(t[2], t[3], calls[hi] - calls[lo])
    draw = difference_per_unit(t[4], t[5], hi - lo)
    per_step = (calls[hi] - calls[lo]) / (hi - lo)
    return {"step_s": loop["min_s"] - per_step * model_call["min_s"],
            "step_median_s": loop["median_s"] - per_step * model_call["median_s"],
            "loop_step_s": loop["min_s"], "model_call_s": model_call["min_s"], "model_calls_per_step": per_step,
            "noise_draw_s": draw["min_s"], "step_cpu_s": loop["cpu_s"]}


def _positive_or_inf(v: float) -> float:
    """A timing difference to minimize: one that came out <= 0 under load is no cost and never the best."""
    return v if v > 0 else float("inf")


def diffusers_step_costs(samplers: Sequence[str], batch: int = 64, shape: tuple[int, ...] = (28, 28, 1),
                         steps: tuple[int, int] = (2, 12), repeats: int = 7, min_total_s: float = 0.1,
                         threads: Sequence[int] = ()) -> dict[str, dict[str, Any]]:
    """diffusers' per-step cost of the schedulers of :data:`DIFFUSERS_SCHEDULERS` for ``samplers`` (PyTorch,
    float32, on this machine's CPU): the loop's time at ``steps[1]`` minus at ``steps[0]`` inference steps,
    divided by the difference (``set_timesteps`` and the first step cancel), less the model's x/2 multiplies
    (:func:`_diffusers_threads`), timed in interleaved rounds at each torch thread count of ``threads``
    (default: JAX's, i.e. every core — XLA:CPU's pool — then 1); the record's own values are those of the
    fastest count (``torch_threads``: the comparison is with diffusers at its best), every count's are under
    ``by_threads``. ``{}`` when torch or diffusers is not installed. A scheduler that fails
    records its error."""
    if not diffusers_available():
        return {}
    import os

    import diffusers
    import torch

    counts = [int(t) for t in threads] or sorted({os.cpu_count() or 1, 1}, reverse=True)
    before = torch.get_num_threads()
    x_T = torch.randn(_nchw(batch, tuple(shape)), generator=torch.Generator().manual_seed(0))
    lo, hi = (int(s) for s in steps)
    out: dict[str, dict[str, Any]] = {}
    for sampler in (s for s in samplers if s in DIFFUSERS_SCHEDULERS):
        rec: dict[str, Any] = {"scheduler": DIFFUSERS_SCHEDULERS[sampler][0], "by_threads": {},
                               "diffusers_version": diffusers.__version__, "torch_version": torch.__version__}
        try:
            for n in counts:
                torch.set_num_threads(n)
                rec["by_threads"][str(n)] = _diffusers_threads(diffusers, torch, sampler, x_T, (lo, hi), repeats,
                                                               min_total_s)
        except Exception as e:  # an API change in one scheduler must not lose the rest of the bench
            rec["status"] = f"error: {e!r}"[:200]
        else:
            best = min(counts, key=lambda n: _positive_or_inf(rec["by_threads"][str(n)]["step_s"]))
            rec.update(status="ok", torch_threads=best, **rec["by_threads"][str(best)])
        finally:
            torch.set_num_threads(before)
        out[sampler] = rec
    return out


def per_example_normal_map(key: jax.Array, first_index: jax.Array | int, shape: tuple[int, ...],
                           dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """:func:`gm_jax.core.rng.per_example_normal` with the examples drawn one after another (``lax.map``)
    instead of by ``vmap``: what a PRNG implementation whose batched draw ignores all keys but the first
    needs (JAX batches ``rng_bit_generator`` — the 'rbg' and 'unsafe_rbg' implementations — by drawing
    ``[batch, ...]`` bits from the first key only)."""
    from gm_jax.core.rng import example_keys

    keys = example_keys(key, first_index, shape[0])
    return jax.lax.map(lambda k: jax.random.normal(k, shape[1:], dtype), keys)


def batched_normal(key: jax.Array, first_index: jax.Array | int, shape: tuple[int, ...],
                   dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """One draw over the whole batch, ``first_index`` ignored: the reference of what per-example keys cost
    (example i's noise then depends on the batch it is drawn in)."""
    del first_index
    return jax.random.normal(key, shape, dtype)


def _prng_draws() -> dict[str, Callable]:
    from gm_jax.core.rng import per_example_normal

    return {"per_example": per_example_normal, "per_example_map": per_example_normal_map, "batched": batched_normal}


# (key implementation, jax_threefry_partitionable — None: the process's setting —, draw of :func:`_prng_draws`)
PRNG_VARIANTS: tuple[tuple[str, bool | None, str], ...] = (
    ("threefry2x32", True, "per_example"), ("threefry2x32", False, "per_example"),
    ("threefry2x32", None, "batched"), ("rbg", None, "per_example"), ("rbg", None, "per_example_map"),
    ("unsafe_rbg", None, "per_example"), ("unsafe_rbg", None, "per_example_map"))


def batch_size_independent(draw: Callable, key: jax.Array, shape: tuple[int, ...], big: int = 64, small: int = 8
                           ) -> bool:
    """Whether ``draw(key, first_index, (n, *shape))`` gives example i the same noise in one batch of ``big``
    (first index 0) as in the batches of ``small`` with first indices 0, small, 2·small, … — the property
    that makes a sample independent of the batch size it is drawn in."""
    require(big % small == 0, f"big must be a multiple of small, got {big}, {small}")
    f_big = jax.jit(lambda k, i: draw(k, i, (big,) + tuple(shape)))
    f_small = jax.jit(lambda k, i: draw(k, i, (small,) + tuple(shape)))
    full = np.asarray(f_big(key, np.uint32(0)))
    parts = np.concatenate([np.asarray(f_small(key, np.uint32(j))) for j in range(0, big, small)])
    return bool(np.array_equal(full, parts))


@contextlib.contextmanager
def threefry_partitionable(value: bool | None) -> Iterator[bool]:
    """``with threefry_partitionable(v) as setting:`` — ``jax_threefry_partitionable`` set to ``v`` inside the
    block (``None``: left as it is), restored after; JAX keys its compilation caches on it, so programs
    traced inside see the value. ``setting``: the value in force."""
    saved = bool(jax.config.jax_threefry_partitionable)
    try:
        if value is not None:
            jax.config.update("jax_threefry_partitionable", bool(value))
        yield bool(jax.config.jax_threefry_partitionable)
    finally:
        jax.config.update("jax_threefry_partitionable", saved)


def prng_costs(batch: int = 64, shape: tuple[int, ...] = (28, 28, 1), steps: tuple[int, int] = (2, 12),
               repeats: int = 7, min_total_s: float = 0.1,
               variants: Sequence[tuple[str, bool | None, str]] | None = None, num_timesteps: int = 1000
               ) -> list[dict[str, Any]]:
    """Per-example noise [batch, *shape] with each of JAX's PRNG implementations (``jax.random.key(seed,
    impl=...)``: threefry2x32 with ``jax_threefry_partitionable`` on and off, 'rbg', 'unsafe_rbg') and each
    draw of ``variants`` (default :data:`PRNG_VARIANTS`): ``draw_s``, the marginal cost of one step's draw in a
    compiled :func:`noise_chain` (``steps[1]`` minus ``steps[0]`` steps, every variant timed in the same
    interleaved rounds, each call under its own threefry mode), ``batch_independent``
    (:func:`batch_size_independent`, batches of 8 and 64), and ``draw_over_default``: the ratio to the
    library's draw (threefry2x32, per-example keys, the process's partitionable setting)."""
    draws = _prng_draws()
    process_setting = bool(jax.config.jax_threefry_partitionable)
    lo, hi = (int(v) for v in steps)
    require(1 <= lo < hi <= num_timesteps, f"need 1 <= steps[0] < steps[1], got {steps}")

    def call(part, fused, key, n):
        def run():
            with threefry_partitionable(part):  # the program compiled for this mode
                return fused(key, np.int32(n))
        return run

    built, calls = [], []
    for impl, part, method in PRNG_VARIANTS if variants is None else variants:
        check_choice("draw", method, draws)
        with threefry_partitionable(part) as setting:
            key = jax.random.key(0, impl=impl)
            fused = _noise_fused(draws[method], int(batch), tuple(shape), hi, int(num_timesteps))
            _, compile_s = compile_seconds(fused, key, np.int32(lo))
            built.append({"impl": impl, "threefry_partitionable": setting, "draw": method, "batch": int(batch),
                          "shape": list(shape), "batch_independent": batch_size_independent(draws[method], key, shape),
                          "compile_s": compile_s, "library_default": (impl, method, setting) == (
                              "threefry2x32", "per_example", process_setting)})
        calls += [call(part, fused, key, lo), call(part, fused, key, hi)]
    times = time_interleaved(calls, repeats=repeats, min_total_s=min_total_s)
    for i, rec in enumerate(built):
        d = difference_per_unit(times[2 * i], times[2 * i + 1], hi - lo)
        rec.update(draw_s=d["min_s"], draw_median_s=d["median_s"], draw_cpu_s=d["cpu_s"])
    ref = next((r["draw_s"] for r in built if r["library_default"]), None)
    for r in built:
        r["draw_over_default"] = _ratio(r["draw_s"], ref)
    return built
