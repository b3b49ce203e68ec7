"""Modes per loss: minimax, non-saturating, WGAN-GP, hinge and least-squares GANs on the ring of eight
Gaussians and the 5x5 grid of 25 Gaussians, each trained with the same MLPs, optimiser and step budget
for several seeds (vmapped: one compilation per loss and dataset).

Diagnostics follow Srivastava et al. 2017 (VEEGAN, Sec. 5.1): a sample is high quality if it lies within
3 std of its nearest mode centre; a mode is covered when at least ``--min_count`` high-quality samples
fall on it. The data sets are gm_jax.data's (std 0.02 for the ring of radius 2, 0.05 for the grid).

    python experiments/gan_mode_study.py --workdir runs/gan_mode_study
    # writes results.json, table.md and modes.png (sample scatter per loss, seed 0)
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.core import DataSpec
from gm_jax.data import (
    EIGHT_GAUSSIANS_CENTRES,
    EIGHT_GAUSSIANS_STD,
    TWENTY_FIVE_GAUSSIANS_CENTRES,
    TWENTY_FIVE_GAUSSIANS_STD,
    eight_gaussians,
    twenty_five_gaussians,
)
from gm_jax.gan import default_config, make_family
from gm_jax.gan.diagnostics import mode_coverage

DATASETS = {
    "eight_gaussians": (eight_gaussians, EIGHT_GAUSSIANS_CENTRES, EIGHT_GAUSSIANS_STD),
    "twenty_five_gaussians": (twenty_five_gaussians, TWENTY_FIVE_GAUSSIANS_CENTRES, TWENTY_FIVE_GAUSSIANS_STD),
}
# loss name in the table -> model overrides (WGAN-GP: Gulrajani et al. 2017, n_critic = 5)
LOSS_SETTINGS = {
    "minimax": {"loss": "minimax"},
    "non_saturating": {"loss": "non_saturating"},
    "wgan_gp": {"loss": "wasserstein", "gp_weight": 1.0, "n_critic": 5},
    "hinge": {"loss": "hinge"},
    "least_squares": {"loss": "least_squares"},
}


def study_config(loss: str, hidden: int, latent_dim: int, lr: float):
    cfg = default_config()
    cfg.model.update({"architecture": "mlp", "hidden": hidden, "depth": 3, "latent_dim": latent_dim,
                      **LOSS_SETTINGS[loss]})
    cfg.optim.update({"learning_rate": lr, "b1": 0.5, "b2": 0.9})
    return cfg


def run_one(dataset: str, loss: str, args: argparse.Namespace) -> dict:
    sampler, centres, std = DATASETS[dataset]
    fam = make_family(study_config(loss, args.hidden, args.latent_dim, args.lr), DataSpec(shape=(2,), name=dataset))
    seeds = jnp.arange(args.seeds)

    def train(seed: jax.Array) -> tuple[jax.Array, jax.Array]:
        root = jax.random.key(seed)
        state = fam.init(root, {"x": jnp.zeros((args.batch_size, 2))})

        def body(s, step):
            k = jax.random.fold_in(root, step)
            s, metrics = fam.train_step(s, {"x": sampler(jax.random.fold_in(k, 1), args.batch_size)}, k)
            return s, metrics["d_loss"]

        state, d_loss = jax.lax.scan(body, state, jnp.arange(args.steps))
        x, _ = fam.sample(state.params, jax.random.fold_in(root, 2**30), args.num_samples)
        return x, d_loss

    start = time.process_time()
    samples, d_loss = jax.jit(jax.vmap(train))(seeds)
    samples = np.asarray(samples)
    cpu = time.process_time() - start
    per_seed = []
    for i in range(args.seeds):
        cov = mode_coverage(jnp.asarray(samples[i]), jnp.asarray(centres), std, min_count=args.min_count)
        per_seed.append({"modes": int(cov.modes_covered), "high_quality": float(cov.high_quality_fraction),
                         "finite": bool(np.all(np.isfinite(samples[i])) and np.all(np.isfinite(d_loss[i])))})
    return {"dataset": dataset, "loss": loss, "num_modes": len(centres), "per_seed": per_seed,
            "cpu_s": cpu, "samples_seed0": samples[0].tolist()}


def write_table(results: list[dict], path: str, args: argparse.Namespace) -> str:
    lines = ["| loss | 8 Gaussians: modes (of 8) | 8G: high-quality % | 25 Gaussians: modes (of 25) | "
             "25G: high-quality % |", "| --- | --- | --- | --- | --- |"]
    by = {(r["dataset"], r["loss"]): r for r in results}
    for loss in LOSS_SETTINGS:
        cells = []
        for dataset in DATASETS:
            r = by.get((dataset, loss))
            if r is None:
                cells += ["-", "-"]
                continue
            modes = [s["modes"] for s in r["per_seed"]]
            hq = [100 * s["high_quality"] for s in r["per_seed"]]
            cells += [f"{np.mean(modes):.1f} ({', '.join(map(str, modes))})",
                      f"{np.mean(hq):.1f} ({', '.join(f'{h:.0f}' for h in hq)})"]
        lines.append(f"| {loss} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return text


def scatter_figure(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = list(LOSS_SETTINGS)
    fig, axes = plt.subplots(len(DATASETS), len(losses), figsize=(2.2 * len(losses), 2.2 * len(DATASETS)))
    by = {(r["dataset"], r["loss"]): r for r in results}
    for row, dataset in enumerate(DATASETS):
        centres = DATASETS[dataset][1]
        for col, loss in enumerate(losses):
            ax = axes[row, col]
            r = by.get((dataset, loss))
            ax.scatter(centres[:, 0], centres[:, 1], s=12, c="tab:red", marker="x", linewidths=1)
            if r is not None:
                x = np.asarray(r["samples_seed0"])
                ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.3)
                ax.set_title(f"{loss}: {r['per_seed'][0]['modes']}/{r['num_modes']}", fontsize=8)
            lim = 2.6 if dataset == "eight_gaussians" else 5.2
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="runs/gan_mode_study")
    parser.add_argument("--steps", type=int, default=3000, help="generator steps per run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--latent_dim", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--num_samples", type=int, default=2500)
    parser.add_argument("--min_count", type=int, default=10, help="high-quality samples needed to cover a mode")
    parser.add_argument("--losses", default=",".join(LOSS_SETTINGS))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--figure", default="", help="also write the scatter figure here (e.g. docs/figures)")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    results = []
    for dataset in args.datasets.split(","):
        for loss in args.losses.split(","):
            r = run_one(dataset, loss, args)
            results.append(r)
            print(f"{dataset:22s} {loss:15s} modes {[s['modes'] for s in r['per_seed']]} "
                  f"hq {[round(s['high_quality'], 3) for s in r['per_seed']]} cpu {r['cpu_s']:.0f}s", flush=True)
    with open(os.path.join(args.workdir, "results.json"), "w") as f:
        json.dump({"args": vars(args), "results": [{k: v for k, v in r.items() if k != "samples_seed0"}
                                                   for r in results]}, f, indent=1)
    print(write_table(results, os.path.join(args.workdir, "table.md"), args))
    scatter_figure(results, os.path.join(args.workdir, "modes.png"))
    if args.figure:
        scatter_figure(results, args.figure)
    print(f"total CPU {sum(r['cpu_s'] for r in results):.0f} s")


if __name__ == "__main__":
    main()
