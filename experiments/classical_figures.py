"""Figures of the classical models (issue 6), one command:

    python experiments/classical_figures.py --rbm_workdir runs/rbm_mnist --bmm_workdir runs/bmm_mnist

- ``classical_gmm_density.png``: full-covariance Gaussian mixtures fitted by EM (k-means++ init) to two
  moons and eight Gaussians; log density contours, the component means and 2-sigma ellipses, and samples.
- ``classical_hopfield_recall.png``: five binarized MNIST digits (±1) stored in a Hopfield net; each row is
  a stored pattern, the pattern with 30 % of its pixels flipped, and the state after 5 asynchronous sweeps
  with Hebbian weights (Hopfield 1982: fails, the digits are strongly correlated) and with the projection
  rule (Personnaz et al. 1985: recalls them).
- ``classical_hopfield_capacity.png``: recall rate of random patterns against the load P/N with the
  alpha_c = 0.138 line (Amit, Gutfreund & Sompolinsky 1985).
- ``classical_rbm_samples.png`` / ``classical_rbm_filters.png``: from a trained RBM run (skipped when the
  work directory is not given): P(v=1|h) after 1000 block Gibbs steps from noise, and the first 100
  columns of W as 28x28 images.
- ``classical_bmm_means.png``: the 100 heaviest component means of a trained Bernoulli mixture run.

Figures go to ``--out`` (default docs/figures); the script prints the CPU time of each.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

from gm_jax.classical import hopfield as hp
from gm_jax.classical import mixtures as mx
from gm_jax.classical import rbm
from gm_jax.data import TOY_SAMPLERS, load_arrays
from gm_jax.train.images import save_image_grid

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def gmm_density(out: str) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4))
    for ax, (name, k) in zip(axes, (("two_moons", 8), ("eight_gaussians", 8)), strict=True):
        x = TOY_SAMPLERS[name](jax.random.key(0), 4000)
        em = mx.gaussian_mixture_em(k, "full", 1e-4)
        params = em.init(jax.random.key(1), x)
        step = jax.jit(em.step)
        for _ in range(100):
            params, m = step(params, x)
        lo, hi = np.asarray(x).min(0) - 0.5, np.asarray(x).max(0) + 0.5
        g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
        grid = jnp.asarray(np.stack([g0.ravel(), g1.ravel()], 1), jnp.float32)
        logp = np.asarray(mx.gmm_log_density(params, grid, "full")).reshape(g0.shape)
        ax.contourf(g0, g1, np.maximum(logp, logp.max() - 25), levels=30, cmap="viridis")
        samples, _ = mx.gmm_sample(params, jax.random.key(2), 600, "full")
        ax.scatter(*np.asarray(samples).T, s=2, c="w", alpha=0.6, label="samples")
        t = np.linspace(0, 2 * np.pi, 100)
        for mean, cov in zip(np.asarray(params["means"]), np.asarray(params["covariances"]), strict=True):
            ell = 2.0 * np.linalg.cholesky(cov) @ np.stack([np.cos(t), np.sin(t)])
            ax.plot(mean[0] + ell[0], mean[1] + ell[1], "r-", lw=0.8)
        ax.set_title(f"{name}: {k}-component GMM, mean log p = {float(m['log_likelihood']):.3f}", fontsize=9)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path = os.path.join(out, "classical_gmm_density.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _digit_patterns(num: int) -> np.ndarray:
    """``num`` binarized MNIST test digits of different classes (±1), chosen greedily for low mutual
    overlap so that Hebbian storage of these correlated images still works."""
    data = load_arrays("mnist", "test")
    x = np.where(data.x.reshape(data.num_examples, -1) > 127, 1.0, -1.0)
    chosen: list[int] = []
    for c in range(10):
        idx = np.flatnonzero(data.label == c)[:200]
        if not chosen:
            chosen.append(int(idx[0]))
            continue
        ov = np.abs(x[idx] @ x[chosen].T).max(1) / x.shape[1]
        chosen.append(int(idx[np.argmin(ov)]))
    order = np.argsort([np.abs(x[i] @ x[chosen].T / x.shape[1]).sum() for i in chosen])
    return x[np.asarray(chosen)[order[:num]]]


def hopfield_recall(out: str, num: int = 5, flip: float = 0.3) -> str:
    pats = jnp.asarray(_digit_patterns(num), jnp.float32)
    noisy = hp.corrupt_patterns(jax.random.key(0), pats, flip)
    rows, overlaps = [np.asarray(pats), np.asarray(noisy)], {}
    for rule, weights in (("Hebbian", hp.hebbian_weights(pats)), ("projection", hp.projection_weights(pats))):
        final, energies = hp.async_recall(weights, noisy, jax.random.key(1), 5)
        rows.append(np.asarray(final))
        overlaps[rule] = np.asarray(hp.overlap(final, pats))
        e = np.asarray(energies)
        assert np.all(np.diff(e, axis=0) <= 1e-3), "energy rose under asynchronous updates"
    rows = np.stack(rows, 1)  # [num, 4, 784]
    fig, axes = plt.subplots(num, 4, figsize=(4.6, 1.25 * num))
    titles = ("stored", f"{int(flip * 100)} % flipped", "Hebbian W", "projection W")
    for i in range(num):
        for j in range(4):
            ax = axes[i, j]
            ax.imshow(rows[i, j].reshape(28, 28), cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=8)
            if j >= 2:
                ax.set_xlabel(f"m={overlaps[titles[j].split()[0]][i]:.2f}", fontsize=7, labelpad=1)
    fig.suptitle(f"Hopfield net, N=784, P={num} digits, 5 asynchronous sweeps", fontsize=9)
    fig.tight_layout()
    path = os.path.join(out, "classical_hopfield_recall.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print("  final overlaps " + ", ".join(f"{k}: {np.round(v, 3).tolist()}" for k, v in overlaps.items()))
    return path


def hopfield_capacity(out: str, num_units: int = 256) -> str:
    loads = [0.02, 0.05, 0.08, 0.10, 0.12, 0.13, 0.14, 0.15, 0.16, 0.18, 0.20, 0.25]
    res = {f: hp.capacity_study(jax.random.key(0), num_units, loads, num_trials=4, flip_fraction=f,
                                num_sweeps=10) for f in (0.0, 0.1)}
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for f, r in res.items():
        ax.plot(r["load"], r["recall_rate"], "o-", ms=3, label=f"recall (overlap ≥ 0.95), {int(f * 100)} % flipped")
    ax.plot(res[0.0]["load"], res[0.0]["exact_rate"], "s--", ms=3, label="exact fixed point, 0 % flipped")
    ax.axvline(0.138, color="k", lw=0.8, ls=":", label="α_c = 0.138")
    ax.set_xlabel("load α = P / N")
    ax.set_ylabel("fraction of patterns")
    ax.set_title(f"Hopfield capacity, N={num_units}, 4 pattern sets per load", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(out, "classical_hopfield_capacity.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    for f, r in res.items():
        print(f"  flip {f}: load -> recall " + ", ".join(f"{a:.2f}:{v:.2f}" for a, v in
                                                       zip(r["load"], r["recall_rate"], strict=True)))
    return path


def _load_params(workdir: str) -> tuple[dict, int]:
    from gm_jax.train.workdir import load_workdir

    _, state = load_workdir(workdir)
    params = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), state.sampling_params())
    return params, int(state.step)


def rbm_figures(out: str, workdir: str) -> list[str]:
    params, step = _load_params(workdir)
    _, probs = rbm.sample_rbm(params, jax.random.key(0), 64, 1000)
    p1 = save_image_grid(np.asarray(probs).reshape(64, 28, 28, 1), os.path.join(out, "classical_rbm_samples.png"),
                         (0.0, 1.0), ncols=8)
    filters = rbm.filters_as_images(params, (28, 28, 1))[:100]
    p2 = save_image_grid(np.asarray(filters), os.path.join(out, "classical_rbm_filters.png"), (0.0, 1.0), ncols=10)
    print(f"  RBM step {step}")
    return [p1, p2]


def bmm_figure(out: str, workdir: str) -> str:
    params, _ = _load_params(workdir)
    top = np.argsort(-np.asarray(params["weights"]))[:100]
    probs = np.asarray(params["probs"])[top].reshape(-1, 28, 28, 1)
    return save_image_grid(probs, os.path.join(out, "classical_bmm_means.png"), (0.0, 1.0), ncols=10)


def main() -> None:
    parser = argparse.ArgumentParser(description="figures of the classical models")
    parser.add_argument("--out", default="docs/figures")
    parser.add_argument("--rbm_workdir", default="")
    parser.add_argument("--bmm_workdir", default="")
    parser.add_argument("--only", default="", help="comma-separated subset: gmm,recall,capacity,rbm,bmm")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    jobs = {"gmm": lambda: gmm_density(args.out), "recall": lambda: hopfield_recall(args.out),
            "capacity": lambda: hopfield_capacity(args.out)}
    if args.rbm_workdir:
        jobs["rbm"] = lambda: rbm_figures(args.out, args.rbm_workdir)
    if args.bmm_workdir:
        jobs["bmm"] = lambda: bmm_figure(args.out, args.bmm_workdir)
    only = [s for s in args.only.split(",") if s]
    for name, job in jobs.items():
        if only and name not in only:
            continue
        t0 = time.process_time()
        paths = job()
        print(f"{name}: {paths} ({time.process_time() - t0:.1f} s CPU)")


if __name__ == "__main__":
    main()
