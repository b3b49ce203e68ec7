"""Class-swap editing with a trained class-conditional diffusion model (issue 16): how often the edit is
classified as the target class, and how much of the source it keeps (SSIM to the source), against the
strength, for SDEdit and for DDIM-inversion editing.

    python experiments/editing_study.py --pretrained ddpm_fashion_mnist --out runs/editing \\
        [--pairs 0:2,7:9] [--strengths 0.2,0.4,0.5,0.6,0.8,1.0] [--num 100] [--steps 50] [--seed 0]

(``--workdir RUN`` instead of ``--pretrained NAME`` for a run of one's own.) For each pair SOURCE:TARGET
(Fashion-MNIST labels; the defaults are t-shirt/top → pullover and sneaker → ankle boot) the first ``--num``
test images of class SOURCE are edited towards label TARGET at every strength s, with the model's default
guidance:

- ``sdedit`` (Meng et al. 2022): noise to the grid point of strength s, then the model's sampler
  (``model.sampler``) on the rest of an ``--steps``-step grid, conditioned on TARGET;
- ``invert``: DDIM inversion to strength s with the unconditional denoiser, then deterministic DDIM back
  conditioned on TARGET (:func:`gm_jax.diffusion.editing.invert_and_regenerate`).

Scores: the fraction of edits that the shipped ``fashion_mnist_cnn`` classifier assigns to TARGET (and, for
reference, to SOURCE), and the mean SSIM (R = 2, images in [−1, 1]) between edit and source. Writes
``OUT/editing_study.json``, ``OUT/editing_vs_strength.png`` (both scores against the strength, one line per
pair and mode) and ``OUT/grid_SOURCE_TARGET.png`` (rows: sources, then each mode and strength; 10 images).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np

PROG = "editing_study"
MODES = ("sdedit", "invert")


def sources(run: Any, label: int, num: int, pool: int = 10000) -> np.ndarray:
    """The first ``num`` test images of class ``label``."""
    from gm_jax.core.errors import ConfigError

    batch = run.pipeline.eval_images(pool)
    x = batch["x"][batch["label"] == label][:num]
    if len(x) < num:
        raise ConfigError(f"only {len(x)} test images of class {label}; lower --num")
    return x


def scores(extractor: Any, edits: np.ndarray, x: np.ndarray, source: int, target: int,
           value_range: tuple[float, float]) -> dict[str, float]:
    import jax.numpy as jnp

    from gm_jax.metrics import ssim
    from gm_jax.train.quality import to_extractor_range

    pred = np.argmax(extractor.class_probs(to_extractor_range(edits, value_range)), axis=-1)
    return {"target_fraction": float(np.mean(pred == target)), "source_fraction": float(np.mean(pred == source)),
            "ssim_to_source": float(np.mean(np.asarray(ssim(jnp.asarray(edits), jnp.asarray(x)))))}


def plot(records: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    curves = sorted({(r["source"], r["target"], r["mode"]) for r in records})
    for source, target, mode in curves:
        rows = sorted((r for r in records if (r["source"], r["target"], r["mode"]) == (source, target, mode)),
                      key=lambda r: r["strength"])
        s = [r["strength"] for r in rows]
        style = "-o" if mode == "sdedit" else "--s"
        axes[0].plot(s, [r["target_fraction"] for r in rows], style, label=f"{source}→{target} {mode}")
        axes[1].plot(s, [r["ssim_to_source"] for r in rows], style, label=f"{source}→{target} {mode}")
    axes[0].set(xlabel="strength", ylabel="classified as target", ylim=(0, 1.02))
    axes[1].set(xlabel="strength", ylabel="SSIM to source", ylim=(0, 1.02))
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pretrained", help="a shipped class-conditional model, e.g. ddpm_fashion_mnist")
    src.add_argument("--workdir", help="a trained class-conditional image diffusion run")
    p.add_argument("--out", required=True)
    p.add_argument("--pairs", default="0:2,7:9", help="SOURCE:TARGET label pairs")
    p.add_argument("--strengths", default="0.2,0.4,0.5,0.6,0.8,1.0")
    p.add_argument("--num", type=int, default=100, help="source images per pair")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        args.pairs = [tuple(int(v) for v in pair.split(":")) for pair in args.pairs.split(",")]
        args.strengths = [float(v) for v in args.strengths.split(",")]
    except ValueError:
        p.error("--pairs is SOURCE:TARGET[,...] with integer labels and --strengths a comma list of numbers")
    if any(len(pair) != 2 or min(pair) < 0 or max(pair) > 9 for pair in args.pairs):
        p.error("--pairs: each is SOURCE:TARGET with labels 0..9")
    if any(not 0.0 < s <= 1.0 for s in args.strengths):
        p.error("--strengths must lie in (0, 1]")
    if args.num < 1 or args.steps < 1:
        p.error("--num and --steps must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    from gm_jax.core.errors import GmJaxError
    from gm_jax.core.rng import purpose_key, seed_key
    from gm_jax.metrics import load_feature_extractor
    from gm_jax.train.compile_cache import enable_compilation_cache
    from gm_jax.train.images import save_image_grid

    args = parse_args(argv)
    try:
        enable_compilation_cache()
        os.makedirs(args.out, exist_ok=True)
        if args.pretrained:
            from gm_jax.pretrained.loading import pretrained_run

            run, state = pretrained_run(args.pretrained)
        else:
            from gm_jax.train.workdir import load_workdir

            run, state = load_workdir(args.workdir)
        params, value_range = state.sampling_params(), run.pipeline.spec.value_range
        extractor = load_feature_extractor("fashion_mnist_cnn")
        key = purpose_key(seed_key(args.seed), "edit")
        payload: dict[str, Any] = {"command": " ".join(sys.argv), "num": args.num, "steps": args.steps,
                                   "guidance": float(run.config.model.guidance), "sampler": run.config.model.sampler,
                                   "train_step": int(state.step), "records": []}
        for source, target in args.pairs:
            x = sources(run, source, args.num)
            rows = [x[:10]]
            for mode in MODES:
                for strength in args.strengths:
                    t0 = time.perf_counter()
                    out, info = run.family.edit(params, key, x, strength, 1, target, mode == "invert",
                                                steps=args.steps)
                    edits = np.asarray(out)[0]
                    record = {"source": source, "target": target, "mode": mode, "strength": strength,
                              "nfe": int(info["nfe"]), "seconds": time.perf_counter() - t0,
                              **scores(extractor, edits, x, source, target, value_range)}
                    payload["records"].append(record)
                    print(json.dumps(record), flush=True)
                    rows.append(edits[:10])
            save_image_grid(np.concatenate(rows), os.path.join(args.out, f"grid_{source}_{target}.png"), value_range,
                            ncols=10)
            with open(os.path.join(args.out, "editing_study.json"), "w") as f:
                json.dump(payload, f, indent=2)
        plot(payload["records"], os.path.join(args.out, "editing_vs_strength.png"))
    except GmJaxError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
