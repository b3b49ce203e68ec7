"""Figures and the class histogram of trained image GANs (gm_jax.gan.family).

    # Fashion-MNIST class histogram of 1000 samples under the shipped classifier (and of 1000 test images)
    python experiments/gan_grids.py histogram --workdir runs/gan_dcgan runs/gan_cgan [--figure PNG]
    # conditional run: latent interpolation per class (rows: classes, columns: z0 -> z1)
    python experiments/gan_grids.py interpolation --workdir runs/gan_cgan --out docs/figures/gan_interpolation.png
    # conditional run: class swap (rows: one latent each, columns: the 10 classes)
    python experiments/gan_grids.py class_swap --workdir runs/gan_cgan --out docs/figures/gan_class_swap.png
    # StyleGAN run: style mixing (top row: sources A, left column: sources B; cell: B's styles before the
    # cutoff layer, A's from it on)
    python experiments/gan_grids.py mixing --workdir runs/gan_stylegan --out docs/figures/gan_stylegan_mixing.png

The histogram counts the classifier's argmax per sample (gm_jax.gan.diagnostics.class_histogram) and
reports its KL divergence from uniform; for a conditional run also the fraction of samples classified as
the label they were generated with. Interpolation is spherical (Shoemake 1985; White 2016, "Sampling
generative networks") between two Gaussian latents.
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.core.rng import purpose_key, seed_key
from gm_jax.gan.diagnostics import class_histogram
from gm_jax.gan.family import make_networks
from gm_jax.gan.nets.stylegan import num_styles
from gm_jax.metrics import load_feature_extractor
from gm_jax.train.images import save_image_grid
from gm_jax.train.quality import real_images, to_extractor_range
from gm_jax.train.workdir import draw_samples, load_workdir

FASHION_CLASSES = ("T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "boot")


def slerp(z0: jax.Array, z1: jax.Array, t: jax.Array) -> jax.Array:
    """Spherical interpolation ``sin((1-t) w) / sin w z0 + sin(t w) / sin w z1``, ``cos w = <z0, z1> /
    (|z0| |z1|)``; ``t [T]`` -> ``[T, D]``."""
    cos = jnp.dot(z0, z1) / (jnp.linalg.norm(z0) * jnp.linalg.norm(z1))
    omega = jnp.arccos(jnp.clip(cos, -1.0, 1.0))
    t = t[:, None]
    return (jnp.sin((1 - t) * omega) * z0 + jnp.sin(t * omega) * z1) / jnp.sin(omega)


def histogram(workdirs: list[str], num: int, seed: int, figure: str) -> dict:
    extractor = load_feature_extractor("fashion_mnist_cnn")
    out: dict = {}
    real_run = None
    for workdir in workdirs:
        run, state = load_workdir(workdir)
        real_run = real_run or run
        x, info = draw_samples(run.family, state.sampling_params(), seed, num)
        probs = extractor.class_probs(to_extractor_range(x, run.pipeline.spec.value_range))
        h = class_histogram(jnp.asarray(probs))
        entry = {"step": int(state.step), "num": num, "fractions": [round(float(v), 4) for v in h.fractions],
                 "kl_from_uniform": float(h.kl_from_uniform), "classes_hit": int(h.classes_hit)}
        if "label" in info:
            entry["label_accuracy"] = float(np.mean(np.argmax(probs, 1) == np.asarray(info["label"])))
        out[workdir] = entry
    real = real_images(real_run, num)
    h = class_histogram(jnp.asarray(extractor.class_probs(to_extractor_range(real,
                                                                             real_run.pipeline.spec.value_range))))
    out["test images"] = {"num": num, "fractions": [round(float(v), 4) for v in h.fractions],
                          "kl_from_uniform": float(h.kl_from_uniform), "classes_hit": int(h.classes_hit)}
    if figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 3))
        width = 0.8 / len(out)
        for i, (name, entry) in enumerate(out.items()):
            label = f"{os.path.basename(name.rstrip('/'))} (KL {entry['kl_from_uniform']:.3f})"
            ax.bar(np.arange(10) + i * width, entry["fractions"], width, label=label)
        ax.set_xticks(np.arange(10) + 0.4 - width / 2, FASHION_CLASSES, fontsize=8)
        ax.set_ylabel("fraction of samples")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(figure, dpi=80)
    return out


def _generator(workdir: str) -> tuple:
    run, state = load_workdir(workdir)
    gen, _ = make_networks(run.config.model, run.pipeline.spec)
    return run, gen, state.sampling_params()["generator"]


def interpolation(workdir: str, steps: int, seed: int) -> tuple[np.ndarray, int]:
    run, gen, params = _generator(workdir)
    m, spec = run.config.model, run.pipeline.spec
    key = purpose_key(seed_key(seed), "interpolation")
    classes = list(range(spec.num_classes) if m.conditional else range(8))
    zs = []
    for c in classes:
        z0, z1 = jax.random.normal(jax.random.fold_in(key, c), (2, int(m.latent_dim)))
        zs.append(slerp(z0, z1, jnp.linspace(0.0, 1.0, steps)))
    labels = jnp.repeat(jnp.asarray(classes, jnp.int32), steps) if m.conditional else None
    # one batch for the whole grid: the DCGAN generator normalises with the statistics of its batch, and a
    # batch of one row's near-identical latents would normalise their shared content (the class) away
    return np.asarray(gen.apply({"params": params}, jnp.concatenate(zs), labels)), steps


def class_swap(workdir: str, num: int, seed: int) -> tuple[np.ndarray, int]:
    run, gen, params = _generator(workdir)
    m, spec = run.config.model, run.pipeline.spec
    if not m.conditional:
        raise SystemExit(f"{workdir} is not class-conditional; class_swap needs --config.model.conditional=true")
    z = jax.random.normal(purpose_key(seed_key(seed), "class_swap"), (num, int(m.latent_dim)))
    k = spec.num_classes
    z_rep = jnp.repeat(z, k, axis=0)
    labels = jnp.tile(jnp.arange(k, dtype=jnp.int32), num)
    return np.asarray(gen.apply({"params": params}, z_rep, labels)), k


def mixing(workdir: str, num: int, seed: int, cutoff: int) -> tuple[np.ndarray, int]:
    run, gen, params = _generator(workdir)
    m, spec = run.config.model, run.pipeline.spec
    if m.architecture != "stylegan":
        raise SystemExit(f"{workdir} is not a StyleGAN run (model.architecture={m.architecture!r})")
    layers = num_styles(spec.shape[0])
    if not 0 < cutoff < layers:
        raise SystemExit(f"--cutoff must be in 1..{layers - 1}")
    k_a, k_b = jax.random.split(purpose_key(seed_key(seed), "mixing"))
    z_a, z_b = (jax.random.normal(k, (num, int(m.latent_dim))) for k in (k_a, k_b))
    apply = jax.jit(lambda *a: jnp.clip(gen.apply({"params": params}, *a), -1.0, 1.0))
    img_a, img_b = apply(z_a), apply(z_b)
    blank = -jnp.ones((1, *spec.shape))
    tiles = [blank, img_a]
    for i in range(num):
        zb = jnp.broadcast_to(z_b[i], z_a.shape)
        tiles += [img_b[i:i + 1], apply(zb, z_a, jnp.array(cutoff))]
    return np.asarray(jnp.concatenate(tiles)), num + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("histogram", "interpolation", "class_swap", "mixing"))
    parser.add_argument("--workdir", nargs="+", required=True)
    parser.add_argument("--num", type=int, default=0, help="histogram: samples (1000); grids: rows (8 / 6)")
    parser.add_argument("--steps", type=int, default=10, help="interpolation: columns")
    parser.add_argument("--cutoff", type=int, default=2, help="mixing: first layer that takes source A's style")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="", help="PNG (grids) or JSON (histogram) path")
    parser.add_argument("--figure", default="", help="histogram: bar chart PNG")
    args = parser.parse_args()
    workdir = args.workdir[0]
    if args.kind == "histogram":
        result = histogram(args.workdir, args.num or 1000, args.seed, args.figure)
        path = args.out or os.path.join(workdir, "class_histogram.json")
        with open(path, "w") as f:
            json.dump(result, f, indent=2)
        print(json.dumps(result))
        return
    if args.kind == "interpolation":
        tiles, ncols = interpolation(workdir, args.steps, args.seed)
    elif args.kind == "class_swap":
        tiles, ncols = class_swap(workdir, args.num or 8, args.seed)
    else:
        tiles, ncols = mixing(workdir, args.num or 6, args.seed, args.cutoff)
    path = args.out or os.path.join(workdir, f"{args.kind}.png")
    save_image_grid(tiles, path, (-1.0, 1.0), ncols=ncols)
    print(path)


if __name__ == "__main__":
    main()
