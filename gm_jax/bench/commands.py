"""``gm-jax bench samplers`` and ``gm-jax bench train``: the grids of quick and full mode, and the files
they write (JSON, Markdown, PNG) under ``--out``."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from gm_jax.core.errors import check_choice, require


@dataclasses.dataclass
class SamplerGrid:
    """What ``bench samplers`` measures; :func:`sampler_grid` fills the quick and full defaults."""

    nets: tuple[str, ...]
    batches: dict[str, tuple[int, ...]]
    samplers: tuple[str, ...]
    steps: dict[str, tuple[int, ...]]
    repeats: int
    quality_samplers: tuple[str, ...]
    quality_steps: tuple[int, ...]
    quality_num: int
    fid_samplers: tuple[str, ...]
    fid_steps: tuple[int, ...]
    fid_num: int
    python_baseline: bool = True
    num_timesteps: int = 1000
    min_time: float = 0.3
    guidance: float = 2.0
    quality_seeds: int = 1
    quality_projections: int = 64
    per_step_batch: int = 64
    per_step_shape: tuple[int, ...] = (28, 28, 1)
    per_step_steps: tuple[int, int] = (2, 12)
    per_step_padding: int = 100
    per_step_repeats: int = 7
    per_step_python_baseline: bool = True
    prng: bool = True
    diffusers: bool = True
    network_timing: bool = True


# Issue 18's per-step cost beyond the network of every registered sampler (negligible denoiser, batch
# 64 × 28 × 28 × 1): the two step counts whose difference is timed in one compiled chain, the padding slots of
# the static grid timed on top, the interleaved rounds, the Python-stepped baseline (also off with
# --no_python_baseline); the PRNG section draws the same noise. Plain dicts so that a test can shrink them.
PER_STEP_QUICK: dict[str, Any] = {"per_step_batch": 64, "per_step_shape": (28, 28, 1), "per_step_steps": (2, 12),
                                  "per_step_padding": 100, "per_step_repeats": 7, "per_step_python_baseline": True}
PER_STEP_FULL: dict[str, Any] = {"per_step_batch": 64, "per_step_shape": (28, 28, 1), "per_step_steps": (2, 42),
                                 "per_step_padding": 300, "per_step_repeats": 11, "per_step_python_baseline": True}


def sampler_grid(quick: bool) -> SamplerGrid:
    """Quick: the 2-D MLP at batch 64 and the tiny U-Net at batch 16, a few step counts (a few minutes
    on 2 idle CPU cores). Full: the 2-D MLP, the tiny U-Net and the default Fashion-MNIST U-Net ('small') at batches 1,
    16 and 64, steps 10–100, quality with 20 000 samples × 3 seeds (hours on a CPU; minutes on an
    accelerator). Both cover every sampler registered when they are called, and time each one's per-step
    cost beyond the network (:data:`PER_STEP_QUICK`, :data:`PER_STEP_FULL`)."""
    from gm_jax.diffusion.samplers import sampler_names

    names = sampler_names()
    if quick:
        return SamplerGrid(nets=("mlp2d", "unet_tiny"), batches={"mlp2d": (64,), "unet_tiny": (16,)},
                           samplers=names, steps={"mlp2d": (5, 10, 20, 50), "unet_tiny": (5, 10)},
                           repeats=3, quality_samplers=names, quality_steps=(5, 10, 20, 50, 100),
                           quality_num=2000, fid_samplers=("ddim", "dpm_solver_2m"), fid_steps=(10, 20),
                           fid_num=256, **PER_STEP_QUICK)
    nets = ("mlp2d", "unet_tiny", "unet_small")
    return SamplerGrid(nets=nets, batches={n: (1, 16, 64) for n in nets}, samplers=names,
                       steps={n: (10, 20, 50, 100) for n in nets}, repeats=5, quality_samplers=names,
                       quality_steps=(5, 10, 20, 50, 100, 200), quality_num=20000,
                       fid_samplers=("ddpm", "ddim", "heun", "dpm_solver_2m"), fid_steps=(10, 20, 50, 100),
                       fid_num=1000, quality_seeds=3, **PER_STEP_FULL)


def _parse_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise_config(f"{what} must be comma-separated integers, got {text!r}")
    require(len(values) > 0 and all(v >= 1 for v in values), f"{what} must be integers >= 1, got {text!r}")
    return values


def raise_config(message: str) -> None:
    """Raise a one-line ConfigError (for use in except blocks)."""
    from gm_jax.core.errors import ConfigError

    raise ConfigError(message) from None


def apply_options(grid: SamplerGrid, nets: str = "", samplers: str = "", steps: str = "", batches: str = "",
                  repeats: int = 0, quality_steps: str = "", quality_num: int = 0, quality_samplers: str = "",
                  python_baseline: bool = True, num_timesteps: int = 0, min_time: float = -1.0,
                  quality_seeds: int = 0, quality_projections: int = 0, per_step_only: bool = False) -> SamplerGrid:
    """Command-line overrides of a grid (empty / 0: keep the grid's value). ``per_step_only``: only issue 18's
    per-step section and the PRNG section (no network timing, no quality or FID vs NFE)."""
    from gm_jax.bench.samplers import NETS
    from gm_jax.diffusion.samplers import sampler_names

    g = dataclasses.replace(grid)
    if nets:  # 'none': no timing (e.g. only FID vs NFE of a --workdir)
        g.nets = () if nets == "none" else tuple(n.strip() for n in nets.split(",") if n.strip())
        for n in g.nets:
            check_choice("network", n, NETS)
    if samplers:
        g.samplers = tuple(s.strip() for s in samplers.split(",") if s.strip())
        for s in g.samplers:
            check_choice("sampler", s, sampler_names())
    if quality_samplers:
        g.quality_samplers = tuple(s.strip() for s in quality_samplers.split(",") if s.strip())
        for s in g.quality_samplers:
            check_choice("sampler", s, sampler_names())
    first = grid.nets[0]
    if steps:
        g.steps = {n: _parse_ints(steps, "--steps") for n in g.nets}
    else:
        g.steps = {n: grid.steps.get(n, grid.steps[first]) for n in g.nets}
    if batches:
        g.batches = {n: _parse_ints(batches, "--batches") for n in g.nets}
    else:
        g.batches = {n: grid.batches.get(n, grid.batches[first]) for n in g.nets}
    if quality_steps:
        g.quality_steps = () if quality_steps == "none" else _parse_ints(quality_steps, "--quality_steps")
    if repeats:
        require(repeats >= 1, f"--repeats must be >= 1, got {repeats}")
        g.repeats = repeats
    if quality_num:
        require(quality_num >= 16, f"--quality_num must be >= 16, got {quality_num}")
        g.quality_num = quality_num
    if quality_seeds:
        require(quality_seeds >= 1, f"--quality_seeds must be >= 1, got {quality_seeds}")
        g.quality_seeds = quality_seeds
    if quality_projections:
        require(quality_projections >= 1, f"--quality_projections must be >= 1, got {quality_projections}")
        g.quality_projections = quality_projections
    if num_timesteps:
        require(num_timesteps >= max(max(v) for v in g.steps.values()),
                f"--num_timesteps must be >= the largest --steps, got {num_timesteps}")
        g.num_timesteps = num_timesteps
    g.python_baseline = python_baseline
    if per_step_only:
        g.network_timing, g.quality_steps = False, ()
    if min_time >= 0:
        g.min_time = float(min_time)
    return g


def _timing(grid: SamplerGrid, out: str, env: dict[str, Any], log: Any) -> list[dict[str, Any]]:
    """The timing records of every network × batch × sampler of ``grid`` (partial results written as they come)."""
    import os

    from gm_jax.bench import report
    from gm_jax.bench.samplers import bench_chain, forward_cost, make_net

    timing: list[dict[str, Any]] = []
    for net_name in grid.nets if grid.network_timing else ():
        setup = make_net(net_name)
        for batch in grid.batches[net_name]:
            fwd = forward_cost(setup, batch, grid.guidance, grid.repeats, grid.num_timesteps)
            for sampler in grid.samplers:
                t0 = time.perf_counter()
                recs = bench_chain(setup, sampler, batch, grid.steps[net_name], repeats=grid.repeats,
                                   guidance=grid.guidance, python_baseline=grid.python_baseline,
                                   min_total_s=grid.min_time,
                                   num_timesteps=grid.num_timesteps, max_steps=grid.num_timesteps,
                                   forward=fwd)
                for r in recs:
                    r.update(env)
                timing += recs
                report.write_json(os.path.join(out, "samplers.partial.json"), {"environment": env, "timing": timing})
                log(f"bench samplers: {net_name} batch {batch} {sampler}: "
                    + ", ".join(f"NFE {r['nfe']} {1e3 * r['wall_s']:.1f} ms (x{r['overhead_ratio']:.2f})"
                                for r in recs) + f" [{time.perf_counter() - t0:.0f} s]")
    return timing


def _per_step(grid: SamplerGrid, log: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(issue 18's per-step cost beyond the network of every sampler registered now — whatever
    ``--samplers`` selects for the network timing: the table's ratios are to Euler and to the noise draw —;
    the PRNG implementations for per-example noise). Nothing when ``grid.nets`` is empty (no timing)."""
    from gm_jax.bench.samplers import per_step_costs, prng_costs
    from gm_jax.diffusion.samplers import sampler_names

    if not grid.nets:
        return {}, []
    samplers = sampler_names()
    kw = dict(batch=grid.per_step_batch, shape=tuple(grid.per_step_shape), steps=tuple(grid.per_step_steps),
              repeats=grid.per_step_repeats, min_total_s=grid.min_time)
    t0 = time.perf_counter()
    per_step = per_step_costs(samplers, padding=grid.per_step_padding, diffusers=grid.diffusers, log=log,
                              python_baseline=grid.python_baseline and grid.per_step_python_baseline, **kw)
    log(f"bench samplers: per-step cost of {len(samplers)} samplers [{time.perf_counter() - t0:.0f} s]")
    prng: list[dict[str, Any]] = []
    if grid.prng:
        t0 = time.perf_counter()
        prng = prng_costs(**kw)
        log("bench samplers: PRNG implementations: " + ", ".join(
            f"{r['impl']}/{r['draw']}/p{int(r['threefry_partitionable'])} {1e6 * r['draw_s']:.0f} µs "
            f"(independent: {r['batch_independent']})" for r in prng) + f" [{time.perf_counter() - t0:.0f} s]")
    return per_step, prng


def _quality(grid: SamplerGrid, workdir: str, log: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(quality vs NFE with the exact mixture score, FID vs NFE of ``workdir``'s trained run if given)."""
    from gm_jax.bench.samplers import fid_vs_nfe, quality_vs_nfe

    quality: list[dict[str, Any]] = []
    if grid.quality_steps:
        t0 = time.perf_counter()
        quality = quality_vs_nfe(grid.quality_samplers, grid.quality_steps, grid.quality_num,
                                 seeds=grid.quality_seeds, exact_projections=grid.quality_projections)
        log(f"bench samplers: quality vs NFE with the exact mixture score [{time.perf_counter() - t0:.0f} s]")
    fid: list[dict[str, Any]] = []
    if workdir:
        t0 = time.perf_counter()
        fid = fid_vs_nfe(workdir, grid.fid_samplers, grid.fid_steps, grid.fid_num)
        log(f"bench samplers: FID vs NFE on {workdir} [{time.perf_counter() - t0:.0f} s]")
    return quality, fid


def _sampler_markdown(grid: SamplerGrid, payload: dict[str, Any]) -> str:
    """``samplers.md``: the timing table, the quality tables and the targets."""
    from gm_jax.bench import report

    env, quality, fid = payload["environment"], payload["quality_exact_score"], payload["fid"]
    md = [f"# gm-jax bench samplers ({payload['mode']})", "",
          f"{env['device_kind']} ({env['platform']}), jax {env['jax_version']}, float32; networks randomly "
          f"initialized; guidance {grid.guidance} (one NFE = one guided pass over 2 × batch).", "",
          report.markdown_table(report.with_ms(payload["timing"]), report.SAMPLER_COLUMNS)]
    if quality:
        md += ["", f"Exact mixture score, {grid.quality_num} samples, {grid.quality_seeds} seed(s); sliced W2 to the "
               f"mixture itself over {grid.quality_projections} fixed directions (mean ± s.e. over seeds; paired "
               "difference to DDPM-1000 on the same seeds); two-sample sliced W2 / MMD² of the first seed:", "",
               report.markdown_table(quality, report.QUALITY_COLUMNS)]
    if fid:
        md += ["", "Trained model:", "", report.markdown_table(fid, report.FID_COLUMNS)]
    md += report.per_step_markdown(payload.get("per_step") or {}, payload.get("prng") or [])
    md += ["", "Targets:", ""] + [f"- {t['target']}: met={t['met']}; measured {t['measured']}"
                                  for t in payload["targets"]]
    return "\n".join(md) + "\n"


def run_sampler_bench(grid: SamplerGrid, out: str, quick: bool, workdir: str = "",
                      log: Any = print) -> dict[str, Any]:
    """Run the grid; write ``out/samplers.json``, ``out/samplers.md``, ``out/bench_time_vs_nfe.png`` and
    ``out/bench_quality_vs_nfe.png``; return the JSON payload."""
    import os

    from gm_jax.bench import report
    from gm_jax.bench.timing import environment

    require(not (workdir and not grid.network_timing), "--per_step_only takes no --workdir (FID vs NFE is off)")
    if workdir:  # a run that cannot be benchmarked fails before anything is written
        from gm_jax.core.options import option_names
        from gm_jax.train.families import family_module
        from gm_jax.train.workdir import read_config

        family = read_config(workdir).model.family
        require("sampler" in option_names(family_module(family).SAMPLE_OPTIONS),
                f"--workdir must hold a run whose family takes --sampler (e.g. diffusion), got {family!r}")
    os.makedirs(out, exist_ok=True)
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    env = environment()
    timing = _timing(grid, out, env, log)
    per_step, prng = _per_step(grid, log)
    quality, fid = _quality(grid, workdir, log)
    payload = {"mode": "quick" if quick else "full", "environment": env, "grid": dataclasses.asdict(grid),
               "weights": "timings use randomly initialized networks (they do not depend on trained weights)",
               "timing": timing, "per_step": per_step, "prng": prng, "quality_exact_score": quality, "fid": fid,
               "fid_note": "" if workdir else "no --workdir given: FID vs NFE needs a trained run",
               "targets": report.sampler_targets(timing, quality) + report.per_step_targets(per_step, prng),
               "total_wall_s": time.perf_counter() - t_start,
               "total_cpu_s": time.process_time() - cpu_start}
    report.write_json(os.path.join(out, "samplers.json"), payload)
    paths = {"json": os.path.join(out, "samplers.json")}
    if timing:
        paths["time_png"] = report.plot_time_vs_nfe(timing, os.path.join(out, "bench_time_vs_nfe.png"))
    if quality or fid:
        paths["quality_png"] = report.plot_quality_vs_nfe(quality, os.path.join(out, "bench_quality_vs_nfe.png"),
                                                          fid)
    with open(os.path.join(out, "samplers.md"), "w") as f:
        f.write(_sampler_markdown(grid, payload))
    paths["markdown"] = os.path.join(out, "samplers.md")
    payload["paths"] = paths
    return payload


def train_grid_names(quick: bool) -> Sequence[str]:
    """Config files (under experiments/configs/) that ``bench train`` measures in each mode."""
    from gm_jax.bench.train import FULL_CONFIGS, QUICK_CONFIGS

    return QUICK_CONFIGS if quick else FULL_CONFIGS


def run_train_bench(out: str, quick: bool, configs: str = "", k: int = 0, repeats: int = 0,
                    scaling: str = "", min_time: float = -1.0, overrides: Sequence[str] = (),
                    log: Any = print, dtypes: str = "", torch: bool = False) -> dict[str, Any]:
    """Run ``bench train``; write ``out/train.json`` and ``out/train.md``; return the JSON payload."""
    import os

    from gm_jax.bench import report
    from gm_jax.bench.timing import environment
    from gm_jax.bench.train import QUICK_OVERRIDES, bench_train, load_bench_config, torch_comparison, train_targets

    check_choice("--dtype", dtypes or "both", ("float32", "bfloat16", "both"))
    names = tuple(c.strip() for c in configs.split(",") if c.strip()) or tuple(train_grid_names(quick))
    k = k or (4 if quick else 10)
    require(k >= 2, f"--k must be >= 2 (steps fused per call), got {k}")
    repeats = repeats or 3
    scaling_configs = tuple(s.strip() for s in scaling.split(",") if s.strip()) or names[:1]
    overrides = (tuple(QUICK_OVERRIDES) if quick else ()) + tuple(overrides)
    for name in dict.fromkeys(n for n in names + scaling_configs if n != "none"):  # all load before any work
        load_bench_config(name, overrides)
    os.makedirs(out, exist_ok=True)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    env = environment()
    records = bench_train(names, k=k, repeats=repeats, overrides=overrides,
                          scaling_configs=scaling_configs, min_time=0.5 if min_time < 0 else min_time, log=log,
                          bfloat16=(dtypes or "both") != "float32")
    records.append(torch_comparison(torch, records, overrides, repeats, 0.5 if min_time < 0 else min_time))
    if records[-1].get("status") == "ok":
        log(f"bench train: PyTorch twin {records[-1]['images_per_s']:.0f} images/s; gm_jax / PyTorch = "
            f"{records[-1]['jax_over_torch']:.2f}")
    targets = train_targets(records, k)
    payload = {"mode": "quick" if quick else "full", "environment": env, "k": k, "records": records,
               "targets": targets, "overrides": list(overrides),
               "total_wall_s": time.perf_counter() - t_start, "total_cpu_s": time.process_time() - cpu_start}
    report.write_json(os.path.join(out, "train.json"), payload)
    md = [f"# gm-jax bench train ({payload['mode']})", "",
          f"{env['device_kind']} ({env['platform']}), {env['device_count']} devices, jax {env['jax_version']}; "
          "images/s of the compiled training step, input pipeline not timed.", "",
          report.markdown_table(report.with_ms(records), report.TRAIN_COLUMNS), ""]
    notes = dict.fromkeys(f"- {r['config']} {r.get('dtype', '')}: {r['status']} — {r['note']}" for r in records
                          if r.get("note"))
    md += list(notes)
    md += ["", "Targets:", ""] + [f"- {t['target']}: met={t['met']}; measured {t['measured']}" for t in targets]
    with open(os.path.join(out, "train.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    payload["paths"] = {"json": os.path.join(out, "train.json"), "markdown": os.path.join(out, "train.md")}
    return payload
