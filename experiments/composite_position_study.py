"""Whether a text-to-image model trained on two-object canvases (``data.composite``) puts each named item on
the side its prompt says, as a function of the classifier-free guidance scale w.

    python experiments/composite_position_study.py --workdir runs/ldm_composite [--guidance 1,2,4,6] \\
        [--num 8] [--sampler dpm_solver_2m] [--steps 20] [--out DIR] [--seed 0] [--max_batch 1024]

Prompts: every ordered pair (a, b), a ≠ b, of the classes (90 for Fashion-MNIST) with the canonical names,
pair i in template ``COMPOSITE_TEMPLATES[i mod 3]`` ("a sneaker on the left and a bag on the right", "a bag on
the right and a sneaker on the left", ...). ``--num`` images per prompt, the same seed at every scale.

Each image [H, 2W] is cut into its halves, and the shipped classifier (``fashion_mnist_cnn`` / ``mnist_cnn``)
names the item in each (argmax class). Per image, with prompted classes a (left) and b (right):

- ``left_accuracy`` / ``right_accuracy``: the left half is classified a / the right half b;
- ``position_accuracy``: both at once (a uniform guess of two different classes: 1/90);
- ``swapped``: the left half is b and the right half a (both items drawn, on the wrong sides);
- ``presence``: {left class, right class} = {a, b}, i.e. ``position_accuracy + swapped``.

The best guidance has the highest position accuracy (ties: the smaller scale). Writes
``OUT/composite_position_study.json`` (every number, the command, the run's step, the NFE, the seconds),
``OUT/position_vs_guidance.png`` and ``OUT/composite_grid.png`` (a dozen prompts at the best guidance). Bad input
is one line ``composite_position_study: error: ...``, exit 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gm_jax.core.errors import GmJaxError, require
from gm_jax.data import captions

PROG = "composite_position_study"
METRICS = ("position_accuracy", "left_accuracy", "right_accuracy", "swapped", "presence")
GRID_PROMPTS = 12
_SPEC = importlib.util.spec_from_file_location("text_to_image_study",
                                               Path(__file__).with_name("text_to_image_study.py"))
one_object = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(one_object)


def pair_prompts(dataset: str) -> tuple[list[str], np.ndarray]:
    """Every ordered pair of different classes as a prompt (module docstring) and its classes int32 [P, 2]."""
    names = captions.class_names(dataset)
    pairs = [(a, b) for a in range(len(names)) for b in range(len(names)) if a != b]
    templates = captions.COMPOSITE_TEMPLATES
    prompts = [captions.composite_caption_text(templates[i % len(templates)], names[a][0], names[b][0])
               for i, (a, b) in enumerate(pairs)]
    return prompts, np.asarray(pairs, np.int32)


def half_predictions(images: np.ndarray, class_probs: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """int [N, 2]: the classifier's argmax class of the left and of the right half of images [N, H, 2W, C] in
    [0, 1] (shown to it in [-1, 1])."""
    x = np.clip(np.asarray(images, np.float32), 0.0, 1.0) * 2.0 - 1.0
    require(x.ndim == 4 and x.shape[2] % 2 == 0, f"two-object images are [N, H, 2W, C], got {x.shape}")
    w = x.shape[2] // 2
    out = []
    for half in (x[:, :, :w], x[:, :, w:]):
        probs = np.asarray(class_probs(half))
        require(probs.ndim == 2 and probs.shape[0] == x.shape[0], f"class_probs gave shape {probs.shape} for "
                                                                  f"{x.shape[0]} images; return [N, K]")
        out.append(np.argmax(probs, axis=1))
    return np.stack(out, axis=1)


def position_scores(predicted: np.ndarray, wanted: np.ndarray) -> dict[str, float]:
    """The metrics of the module docstring from predicted classes [N, 2] and prompted classes [N, 2]."""
    p, w = np.asarray(predicted), np.asarray(wanted)
    left, right = p[:, 0] == w[:, 0], p[:, 1] == w[:, 1]
    swapped = (p[:, 0] == w[:, 1]) & (p[:, 1] == w[:, 0])
    return {"position_accuracy": float(np.mean(left & right)), "left_accuracy": float(left.mean()),
            "right_accuracy": float(right.mean()), "swapped": float(swapped.mean()),
            "presence": float(np.mean((left & right) | swapped)), "num_images": int(p.shape[0])}


def evaluate_guidance(context: dict[str, Any], guidance: float) -> dict[str, Any]:
    """Draw ``num`` images per prompt at one scale and score them; keeps the grid prompts' images."""
    t0 = time.perf_counter()
    args, num = context["args"], context["args"].num
    images, nfe = one_object.draw_prompts(context["run"], context["params"], context["prompts"], args, guidance)
    predicted = half_predictions(images, context["class_probs"])
    scores = position_scores(predicted, np.repeat(context["pairs"], num, axis=0))
    context["grid_images"][guidance] = np.concatenate([images[r * num:(r + 1) * num][:8] for r in context["grid"]])
    return {"guidance": guidance, "nfe": nfe, "seconds": round(time.perf_counter() - t0, 2), **scores}


def load_context(args: argparse.Namespace) -> dict[str, Any]:
    """The run, its parameters, the prompts and the classifier, checked before any sampling."""
    from gm_jax.metrics.features import load_feature_extractor
    from gm_jax.train.workdir import load_workdir

    config = one_object.check_family(args.workdir, "latent_diffusion", "--workdir")
    require(bool(config.data.get("composite", False)), f"--workdir {args.workdir!r} was not trained on two-object "
            "canvases; train one with experiments/configs/ldm_composite_fashion_mnist.py")
    require(args.num >= 1 and args.steps >= 1 and args.max_batch >= 1,
            f"--num, --steps and --max_batch must be >= 1, got {args.num}, {args.steps}, {args.max_batch}")
    dataset = str(config.data.name)
    run, state = load_workdir(args.workdir)
    run.family.check_sample_options({"sampler": args.sampler, "steps": args.steps, "guidance": max(args.guidance)})
    shape = tuple(run.pipeline.spec.shape)
    require(shape == (28, 56, 1), f"the classifier scores 28x28x1 halves; {dataset!r} canvases are {shape}")
    prompts, pairs = pair_prompts(dataset)
    extractor = load_feature_extractor(one_object.CLASSIFIERS[one_object.caption_kind(dataset)])
    grid = [int(i) for i in np.linspace(0, len(prompts) - 1, GRID_PROMPTS).round()]
    return {"args": args, "run": run, "params": state.sampling_params(), "step": int(state.step),
            "dataset": dataset, "prompts": prompts, "pairs": pairs, "class_probs": extractor.class_probs,
            "classifier": {"name": extractor.name, "sha256": extractor.checksum}, "grid": grid, "grid_images": {}}


def plot_position(results: Sequence[dict[str, Any]], path: str, title: str) -> str:
    """Each metric against guidance, one line each, with the 1/90 chance of a uniform two-class guess."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    w = [r["guidance"] for r in results]
    for metric, style in zip(METRICS, ("-o", "--s", "--^", ":v", ":x"), strict=True):
        ax.plot(w, [r[metric] for r in results], style, label=metric, markersize=4)
    ax.axhline(1 / 90, color="gray", lw=0.8, ls="--")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("guidance w")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_outputs(context: dict[str, Any], results: list[dict[str, Any]], argv: Sequence[str],
                  seconds: float) -> dict[str, Any]:
    """``composite_position_study.json``, ``position_vs_guidance.png`` and ``composite_grid.png``."""
    from gm_jax.train.images import save_prompt_grid

    args = context["args"]
    os.makedirs(args.out, exist_ok=True)
    best = float(results[int(np.argmax([r["position_accuracy"] for r in results]))]["guidance"])
    grid = os.path.join(args.out, "composite_grid.png")
    grid_prompts = [context["prompts"][i] for i in context["grid"]]
    save_prompt_grid(context["grid_images"][best], grid_prompts, grid, value_range=(0.0, 1.0))
    plot = plot_position(results, os.path.join(args.out, "position_vs_guidance.png"),
                         f"{os.path.basename(os.path.abspath(args.workdir))} step {context['step']}: "
                         f"{args.sampler} {args.steps} steps, {args.num} images/prompt (dashed: 1/90)")
    report = {"command": [os.path.basename(sys.argv[0]) or PROG, *argv], "workdir": os.path.abspath(args.workdir),
              "step": context["step"], "dataset": context["dataset"], "sampler": args.sampler, "steps": args.steps,
              "nfe": results[0]["nfe"], "num": args.num, "seed": args.seed, "guidance": list(args.guidance),
              "classifier": context["classifier"], "seconds": round(seconds, 2), "best_guidance": best,
              "num_prompts": len(context["prompts"]), "grid_prompts": grid_prompts, "results": results,
              "files": {"plot": plot, "grid": grid}}
    path = os.path.join(args.out, "composite_position_study.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    report["files"]["json"] = path
    return report


def build_parser() -> argparse.ArgumentParser:
    """The command line of the module docstring."""
    p = one_object._Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="a latent_diffusion run trained with data.composite=true")
    p.add_argument("--guidance", default="1,2,4,6", help="comma-separated guidance scales w >= 0")
    p.add_argument("--num", type=int, default=8, help="images per prompt")
    p.add_argument("--sampler", default="dpm_solver_2m")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", default="docs/figures/composite_position_study")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples")
    p.add_argument("--max_batch", type=int, default=1024, help="most images per sampling call")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study; 0 on success, 2 (one line on stderr) on bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        args.guidance = one_object.parse_guidance(args.guidance)
        t0 = time.perf_counter()
        context = load_context(args)
        results = []
        for w in args.guidance:
            results.append(evaluate_guidance(context, w))
            print(json.dumps(results[-1]), flush=True)
        report = write_outputs(context, results, argv, time.perf_counter() - t0)
    except SystemExit as e:
        return int(e.code or 0)
    except GmJaxError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print("| guidance | position acc | left acc | right acc | swapped | presence |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in report["results"]:
        print(f"| {r['guidance']:g} | " + " | ".join(f"{r[m]:.3f}" for m in METRICS) + " |")
    print(json.dumps(report["files"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
