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

Quality per NFE uses the exact score of a 2-D Gaussian mixture (:mod:`gm_jax.diffusion.gmm`): sliced
Wasserstein distance (Rabin et al. 2011) and RBF-MMD² (Gretton et al. 2012) between samples and exact
draws of the mixture, with DDPM ancestral at 1000 steps as the reference, and the same distance between two
exact draws as the sampling-noise floor. With a trained run, FID (Heusel et al. 2017) against NFE.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.bench.timing import CompileWindow, TraceCounter, compile_seconds, time_call
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
