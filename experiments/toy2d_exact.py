"""2-D toy benchmarks of the exact-likelihood families (issue 8): flow matching (independent and mini-batch
OT coupling, linear path) sampled with Euler / Heun / Dormand-Prince at several NFE, scored by the sliced
2-Wasserstein distance to fresh data (gm_jax.metrics.toy.sliced_wasserstein, 256 projections), and RealNVP
density plots with their test NLL. Datasets: eight Gaussians, two moons, checkerboard.

    nice -n 15 python experiments/toy2d_exact.py --steps 1500 --out runs/exact/toy2d
    # writes OUT/results.json, docs/figures/fm_toy_sw_vs_nfe.png, docs/figures/flow_toy_densities.png

The reference floor of the metric is SW between two independent data samples of the same size.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gm_jax.core import DataSpec, seed_key, step_key  # noqa: E402
from gm_jax.data.toy2d import TOY_SAMPLERS, TOY_VALUE_RANGES  # noqa: E402
from gm_jax.flow_matching import family as fm_family  # noqa: E402
from gm_jax.flows import family as flow_family  # noqa: E402
from gm_jax.flows.model import Flow  # noqa: E402
from gm_jax.metrics.toy import sliced_wasserstein  # noqa: E402
from gm_jax.train.config import base_config  # noqa: E402

DATASETS = ("eight_gaussians", "two_moons", "checkerboard")
FIXED_NFE = {"euler": (1, 2, 4, 8, 16, 32, 64), "heun": (2, 4, 8, 16, 32, 64)}


def train(family, spec_name: str, steps: int, batch: int, seed: int):
    sampler = TOY_SAMPLERS[spec_name]
    root = seed_key(seed)
    data_key = jax.random.fold_in(root, 1)
    state = family.init(root, {"x": sampler(data_key, batch)})
    step = jax.jit(family.train_step)
    for s in range(steps):
        state, metrics = step(state, {"x": sampler(jax.random.fold_in(data_key, s + 1), batch)}, step_key(root, s))
    return state, {k: float(v) for k, v in metrics.items()}


def fm_config(coupling: str) -> object:
    cfg = base_config()
    cfg.model = fm_family.model_defaults()
    cfg.model.update(coupling=coupling, hidden=128, num_layers=3, rtol=1e-4, atol=1e-4)
    cfg.optim.learning_rate = 1e-3
    return cfg


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--num", type=int, default=2000, help="samples per SW estimate")
    p.add_argument("--out", default="runs/exact/toy2d")
    p.add_argument("--figures", default="docs/figures")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.figures, exist_ok=True)
    spec = DataSpec(shape=(2,))
    results: dict = {"steps": args.steps, "batch": args.batch, "num": args.num, "datasets": {}}
    sw_key = jax.random.key(7)
    t_start = time.process_time()
    flow_states = {}
    for name in DATASETS:
        ref = TOY_SAMPLERS[name](jax.random.key(101), args.num)
        floor = float(sliced_wasserstein(TOY_SAMPLERS[name](jax.random.key(102), args.num), ref, sw_key, 256))
        entry: dict = {"sw_floor": floor}
        for coupling in ("independent", "ot"):
            fam = fm_family.make_family(fm_config(coupling), spec)
            state, last = train(fam, name, args.steps, args.batch, seed=0)
            rows = []
            for solver, nfes in FIXED_NFE.items():
                for nfe in nfes:
                    steps = nfe if solver == "euler" else nfe // 2
                    x, info = fam.sample(state.params, jax.random.key(5), args.num, sampler=solver, steps=steps)
                    rows.append({"solver": solver, "nfe": int(info["nfe"]),
                                 "sw": float(sliced_wasserstein(x, ref, sw_key, 256))})
            x, info = fam.sample(state.params, jax.random.key(5), args.num, sampler="dopri5")
            sw = float(sliced_wasserstein(x, ref, sw_key, 256))
            rows.append({"solver": "dopri5", "nfe": int(info["nfe"]), "sw": sw})
            nll = float(jax.jit(fam.evaluate)(state.params, {"x": ref[:500]}, jax.random.key(3))["nll"])
            entry[coupling] = {"rows": rows, "final_loss": last["loss"], "test_nll_nats": nll}
            print(name, coupling, "nll", round(nll, 3), [(r["solver"], r["nfe"], round(r["sw"], 4)) for r in rows],
                  flush=True)
        cfg = base_config()
        cfg.model = flow_family.model_defaults()
        cfg.optim.learning_rate = 1e-3
        ffam = flow_family.make_family(cfg, spec)
        fstate, _ = train(ffam, name, args.steps, args.batch, seed=0)
        fnll = float(jax.jit(ffam.evaluate)(fstate.params, {"x": ref[:500]}, jax.random.key(3))["nll"])
        fx, _ = ffam.sample(fstate.params, jax.random.key(5), args.num)
        entry["realnvp"] = {"test_nll_nats": fnll, "sw": float(sliced_wasserstein(fx, ref, sw_key, 256))}
        flow_states[name] = (ffam, fstate, cfg)
        results["datasets"][name] = entry
        print(name, "realnvp nll", round(fnll, 3), "sw", round(entry["realnvp"]["sw"], 4), flush=True)
    results["cpu_seconds"] = round(time.process_time() - t_start, 1)

    # figure 1: SW vs NFE
    fig, axes = plt.subplots(1, len(DATASETS), figsize=(4 * len(DATASETS), 3.2))
    for ax, name in zip(axes, DATASETS, strict=True):
        entry = results["datasets"][name]
        for coupling, ls in (("independent", "-"), ("ot", "--")):
            for solver, marker in (("euler", "o"), ("heun", "s")):
                rows = [r for r in entry[coupling]["rows"] if r["solver"] == solver]
                ax.plot([r["nfe"] for r in rows], [r["sw"] for r in rows], ls, marker=marker, ms=3,
                        label=f"{solver}, {'I-CFM' if coupling == 'independent' else 'OT-CFM'}")
            d = [r for r in entry[coupling]["rows"] if r["solver"] == "dopri5"][0]
            ax.plot([d["nfe"]], [d["sw"]], "k*" if coupling == "ot" else "kx", ms=7,
                    label=f"dopri5, {'I-CFM' if coupling == 'independent' else 'OT-CFM'}")
        ax.axhline(entry["sw_floor"], color="gray", lw=0.8, label="data vs data")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("NFE")
    axes[0].set_ylabel("sliced W2 to data")
    axes[-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(os.path.join(args.figures, "fm_toy_sw_vs_nfe.png"), dpi=90)
    plt.close(fig)

    # figure 2: RealNVP densities
    fig, axes = plt.subplots(1, len(DATASETS), figsize=(3.2 * len(DATASETS), 3.2))
    for ax, name in zip(axes, DATASETS, strict=True):
        ffam, fstate, _ = flow_states[name]
        lo, hi = TOY_VALUE_RANGES[name]
        lo, hi = lo - 0.5, hi + 0.5
        g = np.linspace(lo, hi, 200)
        xx, yy = np.meshgrid(g, g)
        pts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32)
        flow = flow_family.build_flow(flow_states[name][2].model, spec)
        logp = np.asarray(flow.apply(fstate.params, pts, method=Flow.log_prob))
        ax.imshow(np.exp(logp).reshape(200, 200), origin="lower", extent=(lo, hi, lo, hi), cmap="viridis")
        ax.set_title(f"{name}: NLL {results['datasets'][name]['realnvp']['test_nll_nats']:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(os.path.join(args.figures, "flow_toy_densities.png"), dpi=80)
    plt.close(fig)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print("cpu_seconds", results["cpu_seconds"])


if __name__ == "__main__":
    main()
