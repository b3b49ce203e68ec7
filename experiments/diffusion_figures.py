"""Figures and timings of a trained image DDPM: the forward process x_0 → x_T, the reverse (ancestral)
chain with its x̂_0 predictions, and one sample grid per sampler and number of steps with the measured
time of each (compile+first call, then the steady-state call), plus an NCSN toy panel from a 2-D score run.

    python experiments/diffusion_figures.py --workdir runs/ddpm_fmnist_cpu --out docs/figures \
        [--toy_workdir runs/ncsn_toy]

Writes ``diffusion_forward.png``, ``diffusion_reverse.png``, ``diffusion_samplers.png``,
``diffusion_samplers.json`` (timings, NFE) and, with ``--toy_workdir``, ``ncsn_toy.png``; prints a
Markdown table of the timings.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.diffusion.family import build_network
from gm_jax.diffusion.parametrization import make_denoiser
from gm_jax.diffusion.samplers import ancestral_step, prior_sample
from gm_jax.diffusion.schedules import discrete_schedule, make_grid
from gm_jax.train.images import make_grid as tile
from gm_jax.train.workdir import draw_samples, load_workdir

# (sampler, steps): DDPM's own 1000-step chain, its shortened grids, and the fast ODE solvers
SAMPLER_GRID = (("ddpm", 1000), ("ddpm", 100), ("ddim", 50), ("ddim", 10), ("heun", 10), ("euler", 20),
                ("dpm_solver_2m", 20), ("dpm_solver_2m", 10), ("pc", 100))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def forward_figure(x0: np.ndarray, schedule, path: str, times=(0, 50, 100, 200, 400, 600, 800, 999),
                   seed: int = 0) -> str:
    """Rows: images; columns: x_t ~ q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) (Ho et al. 2020, eq. 4)."""
    plt = _plt()
    eps = np.asarray(jax.random.normal(jax.random.key(seed), x0.shape))
    cols = []
    for t in times:
        a, s = (float(v) for v in schedule.alpha_sigma(jnp.int32(t)))
        cols.append(a * x0 + s * eps)
    stack = np.stack(cols, 1).reshape((-1,) + x0.shape[1:])
    fig, ax = plt.subplots(figsize=(1.0 * len(times), 1.0 * len(x0) + 0.4))
    ax.imshow(tile(stack, (-1.0, 1.0), ncols=len(times))[..., 0], cmap="gray")
    ax.set_xticks([(28 + 2) * i + 16 for i in range(len(times))], [f"t={t}" for t in times])
    ax.set_yticks([])
    ax.set_title("forward process q(x_t | x_0)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def reverse_figure(run, params, path: str, steps: int = 100, snapshots: int = 8, guidance: float = 2.0,
                   seed: int = 0) -> str:
    """One class per row: x_t along a ``steps``-step ancestral chain (Ho et al. 2020, Alg. 2) and, below each,
    the network's x̂_0 at that step."""
    m, spec = run.config.model, run.pipeline.spec
    schedule = discrete_schedule(m.beta_schedule, int(m.num_timesteps))
    grid = make_grid("discrete", schedule, jnp.int32(steps), steps)
    num_classes = spec.num_classes
    label = jnp.arange(num_classes, dtype=jnp.int32)
    module = build_network(m, spec, num_classes)
    net = lambda x, t, y: module.apply({"params": params}, x, t, y, False)
    denoiser = make_denoiser(m.parametrization, net, label, guidance, num_classes)

    @jax.jit
    def step(x, k, key):
        t, a, s = grid.t[k], grid.alpha[k], grid.sigma[k]
        x0 = jnp.clip(denoiser(x, t, a, s), -1.0, 1.0)
        z = jax.random.normal(jax.random.fold_in(key, k), x.shape)
        return ancestral_step(x, x0, z, a, s, grid.alpha[k + 1], grid.sigma[k + 1]), x0

    key = jax.random.key(seed)
    x = prior_sample(key, grid, (num_classes,) + tuple(spec.shape))
    keep = set(np.linspace(0, steps - 1, snapshots).round().astype(int).tolist())
    xs, x0s = [], []
    for k in range(steps):
        x_next, x0 = step(x, jnp.int32(k), key)
        if k in keep:
            xs.append(np.asarray(x))
            x0s.append(np.asarray(x0))
        x = x_next
    xs.append(np.asarray(x))
    x0s.append(np.asarray(x))
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(2 * 0.8 * len(xs), 0.8 * num_classes + 0.6))
    for ax, imgs, title in ((axes[0], xs, "x_t along the chain"), (axes[1], x0s, "x̂_0 predicted at that step")):
        stack = np.stack(imgs, 1).reshape((-1,) + tuple(spec.shape))
        ax.imshow(tile(np.clip(stack, -1, 1), (-1.0, 1.0), ncols=len(imgs))[..., 0], cmap="gray")
        ax.set_axis_off()
        ax.set_title(f"{title} ({steps}-step ancestral, w={guidance})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def sampler_grid(run, params, out: str, num: int, guidance: float, seed: int,
                 grid: tuple = SAMPLER_GRID) -> list[dict]:
    """Sample ``num`` images per (sampler, steps); time the first call (compiles) and a second call."""
    family, spec = run.family, run.pipeline.spec
    label = np.arange(num) % max(spec.num_classes, 1) if spec.num_classes else None
    records, panels = [], []
    for sampler, steps in grid:
        kw = dict(sampler=sampler, steps=steps, guidance=guidance, label=label)
        t0 = time.perf_counter()
        x, info = draw_samples(family, params, seed, num, **kw)
        first = time.perf_counter() - t0
        steady = float("nan")
        if steps < 500:  # a second, already compiled call (the 1000-step chain is timed once: compile is small)
            t0 = time.perf_counter()
            x, info = draw_samples(family, params, seed, num, **kw)
            steady = time.perf_counter() - t0
        rec = dict(sampler=sampler, steps=steps, nfe=info["nfe"], num=num, guidance=guidance,
                   first_call_s=round(first, 2), steady_s=round(steady, 2))
        print(json.dumps(rec), flush=True)
        records.append(rec)
        shown = first if np.isnan(steady) else steady
        panels.append((f"{sampler}-{steps}\nNFE {info['nfe']}, {shown:.1f} s", x))
    plt = _plt()
    cols = 3
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.6 * rows))
    for ax in np.ravel(axes):
        ax.set_axis_off()
    for ax, (title, x) in zip(np.ravel(axes), panels, strict=False):
        ax.imshow(tile(x[:30], spec.value_range, ncols=6)[..., 0], cmap="gray")
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"{num} samples per sampler (shown: 30; labels 0-9 in turn), guidance w={guidance}; "
                 "CFG costs 2 network passes per NFE", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "diffusion_samplers.png"), dpi=80)
    plt.close(fig)
    return records


def toy_figure(workdir: str, path: str, num: int = 2000, seed: int = 0) -> str:
    """Data vs annealed-Langevin and probability-flow (Heun) samples of a 2-D score model."""
    run, state = load_workdir(workdir)
    params = state.sampling_params()
    data = np.asarray(next(iter(run.pipeline.eval_batches(num)))["x"])
    panels = [("data", data, None)]
    for sampler, steps in (("annealed_langevin", 100), ("pc", 100), ("heun", 50)):
        x, info = draw_samples(run.family, params, seed, num, sampler=sampler, steps=steps)
        panels.append((f"{sampler}-{steps} (NFE {info['nfe']})", x, info))
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for ax, (title, x, _) in zip(axes, panels, strict=True):
        ax.scatter(x[:, 0], x[:, 1], s=1.5, alpha=0.5)
        ax.set_xlim(-4.5, 4.5)
        ax.set_ylim(-4.5, 4.5)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="a trained image diffusion run (discrete process)")
    p.add_argument("--out", default="docs/figures")
    p.add_argument("--num", type=int, default=32)
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--toy_workdir", default="")
    p.add_argument("--quick", action="store_true", help="few, short chains (checks the script)")
    p.add_argument("--only_samplers", action="store_true", help="skip the forward/reverse/toy figures")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)

    run, state = load_workdir(args.workdir)
    params = state.sampling_params()
    if not args.only_samplers:
        figures(args, run, params)
    grid = (("ddim", 5), ("heun", 3), ("pc", 4)) if args.quick else SAMPLER_GRID
    records = sampler_grid(run, params, args.out, args.num, args.guidance, args.seed, grid)
    meta = dict(workdir=args.workdir, step=int(state.step), device=jax.devices()[0].device_kind,
                jax=jax.__version__, records=records)
    with open(os.path.join(args.out, "diffusion_samplers.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print("| sampler | steps | NFE | first call (s, incl. compile) | second call (s) |")
    print("| --- | --- | --- | --- | --- |")
    for r in records:
        print(f"| {r['sampler']} | {r['steps']} | {r['nfe']} | {r['first_call_s']} | {r['steady_s']} |")


def figures(args: argparse.Namespace, run, params) -> None:
    m = run.config.model
    x0 = np.asarray(next(iter(run.pipeline.eval_batches(8)))["x"])
    lo, hi = run.pipeline.spec.value_range
    x0 = 2.0 * (x0 - lo) / (hi - lo) - 1.0
    print(forward_figure(x0, discrete_schedule(m.beta_schedule, int(m.num_timesteps)),
                         os.path.join(args.out, "diffusion_forward.png")))
    print(reverse_figure(run, params, os.path.join(args.out, "diffusion_reverse.png"), guidance=args.guidance,
                         steps=10 if args.quick else 100))
    if args.toy_workdir:
        print(toy_figure(args.toy_workdir, os.path.join(args.out, "ncsn_toy.png")))


if __name__ == "__main__":
    main()
