"""How well a trained text-to-image latent diffusion run follows its prompts, as a function of the
classifier-free guidance scale w (Ho & Salimans 2022): class accuracy, brightness and size accuracy and,
with a CLIP run, the CLIPScore (Hessel et al. 2021, w = 100) of its samples.

    python experiments/text_to_image_study.py --workdir runs/ldm_text [--clip_workdir runs/clip] \\
        [--guidance 1,2,3,4,6] [--num 32] [--sampler dpm_solver_2m] [--steps 20] [--out DIR] [--seed 0] \\
        [--prompts_per_set 30] [--max_batch 1024]

Two prompt sets of ``--prompts_per_set`` prompts each (30 by default, fixed by ``--seed``), every prompt with
the canonical class name:

- ``train_style``: :data:`~gm_jax.data.captions.TRAIN_TEMPLATES` with each class and attribute phrase ("",
  "dark", "bright", "small", "large" and the size+brightness pairs) that forms no held-out pair; classes and
  phrases are cycled so each class gets n / C prompts and each phrase about n / 9.
- ``heldout``: a third of the set from :func:`~gm_jax.data.captions.heldout_prompts` (the held-out
  (word, class) pairs of :data:`~gm_jax.data.captions.HELDOUT_COMBINATIONS` in any template, e.g. "a dark
  sneaker"), the rest unseen phrasings (:data:`~gm_jax.data.captions.HELDOUT_TEMPLATES`, e.g. "a sketch of a
  large bag") with no held-out pair. The two kinds are also reported apart (``heldout_combination``,
  ``heldout_phrasing``).

For each guidance scale ``num`` images per prompt are drawn (the same seed at every scale, so the curves
compare the same initial noise), each prompt is parsed (:func:`~gm_jax.data.captions.parse_caption`), and

- class accuracy = fraction of images whose argmax class of the shipped classifier
  (``load_feature_extractor``: ``fashion_mnist_cnn`` / ``mnist_cnn``) is the prompt's class (chance 1/10);
- brightness (size) accuracy = among the images of prompts that name a brightness (size) word, the fraction
  whose measured attribute (:func:`~gm_jax.data.captions.measure_attributes` against the run's
  ``caption_thresholds.json``, the prompted class as the label) is the word's index (0 dark/small, 2
  bright/large; chance about 1/3, as the cuts are per-class terciles of the training images);
- ``clip_score`` (``--clip_workdir``): the mean over images of 100 · max(cos(image, prompt), 0) of the CLIP
  run's embeddings (:func:`gm_jax.nn.clip.clip_score`).

The best guidance is the one with the highest prompt fidelity: the mean over the two sets of the mean of
their class, brightness and size accuracies (ties: the smaller scale). Writes ``OUT/text_to_image_study.json``
(every number, the command line, the run's step, sampler, steps, NFE, seconds), ``OUT/fidelity_vs_guidance.png``
(one panel per metric, one line per set) and ``OUT/prompts_grid.png`` (a dozen prompts, held-out combinations
among them, at the best guidance). Bad input is one line ``text_to_image_study: error: ...``, exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gm_jax.core.errors import CheckpointError, ConfigError, GmJaxError, require
from gm_jax.data import captions

PROG = "text_to_image_study"
SETS = ("train_style", "heldout")
GROUPS = ("train_style", "heldout", "heldout_phrasing", "heldout_combination")
METRICS = ("class_accuracy", "brightness_accuracy", "size_accuracy", "clip_score")
ACCURACIES = METRICS[:3]
# attribute phrases as the captions write them ("size brightness"), the empty phrase first
PHRASES = tuple(" ".join(w for w in (s, b) if w) for s in captions.SIZE_WORDS for b in captions.BRIGHTNESS_WORDS)
CLASSIFIERS = {"fashion_mnist": "fashion_mnist_cnn", "mnist": "mnist_cnn"}
GRID_PROMPTS = 12


# ----------------------------------------------------------------------------------------------------------
# Prompt sets
# ----------------------------------------------------------------------------------------------------------


def caption_kind(dataset: str) -> str:
    """'fashion_mnist' or 'mnist': the caption vocabulary of ``dataset`` (a one-line error for others)."""
    names = captions.class_names(dataset)
    return next(k for k, v in captions.CLASS_NAMES.items() if v == names)


def forms_heldout_pair(phrase: str, label: int, dataset: str) -> bool:
    """Whether a word of ``phrase`` and class ``label`` form a pair of HELDOUT_COMBINATIONS."""
    pairs = captions.HELDOUT_COMBINATIONS[caption_kind(dataset)]
    return any((w, int(label)) in pairs for w in phrase.split())


def stratified_prompts(dataset: str, templates: Sequence[str], n: int, rng: np.random.Generator) -> list[str]:
    """``n`` prompts of ``templates`` with the canonical class names: item i takes class ``perm_C[i mod C]``
    and phrase ``perm_9[i mod 9]`` (the next phrase in that order when it forms a held-out pair with the
    class) and a template drawn by ``rng``."""
    names = captions.class_names(dataset)
    class_order = rng.permutation(len(names))
    phrase_order = [PHRASES[j] for j in rng.permutation(len(PHRASES))]
    template_draw = rng.integers(0, len(templates), n)
    out = []
    for i in range(n):
        c = int(class_order[i % len(names)])
        k = i % len(phrase_order)
        while forms_heldout_pair(phrase_order[k], c, dataset):
            k = (k + 1) % len(phrase_order)
        out.append(captions.render_caption(templates[template_draw[i]], names[c][0], phrase_order[k]))
    return out


def combination_prompts(dataset: str, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` of :func:`captions.heldout_prompts` (held-out (word, class) pairs), taken round-robin over the
    pairs, each pair's templates in an order drawn by ``rng``."""
    every = captions.heldout_prompts(dataset)
    pairs = len(captions.HELDOUT_COMBINATIONS[caption_kind(dataset)])
    per = len(every) // pairs
    orders = [[every[p * per + int(j)] for j in rng.permutation(per)] for p in range(pairs)]
    interleaved = [orders[p][j] for j in range(per) for p in range(pairs)]
    return interleaved[:n]


def prompt_sets(dataset: str, n: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """The two prompt sets (module docstring): ``{"train_style": [...], "heldout": [...]}``, each entry
    ``{"prompt", "kind"}`` with kind 'train_style', 'heldout_phrasing' or 'heldout_combination'."""
    require(n >= 1, f"--prompts_per_set must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    train = stratified_prompts(dataset, captions.TRAIN_TEMPLATES, n, rng)
    n_comb = max(1, n // 3) if n >= 2 else 0
    combos = combination_prompts(dataset, n_comb, rng)
    phrasing = stratified_prompts(dataset, captions.HELDOUT_TEMPLATES, n - len(combos), rng)
    return {"train_style": [{"prompt": p, "kind": "train_style"} for p in train],
            "heldout": [{"prompt": p, "kind": "heldout_phrasing"} for p in phrasing]
            + [{"prompt": p, "kind": "heldout_combination"} for p in combos]}


def prompt_targets(prompts: Sequence[str], dataset: str) -> dict[str, np.ndarray]:
    """What each prompt asks for (:func:`captions.parse_caption`): ``label`` int32 [P] and the attribute
    word index wanted, ``brightness`` / ``size`` int32 [P] (0 low, 2 high, -1 when the prompt names none)."""
    label, wanted = [], {"brightness": [], "size": []}
    for prompt in prompts:
        c, brightness, size = captions.parse_caption(prompt, dataset)
        label.append(c)
        wanted["brightness"].append(-1 if brightness is None else captions.BRIGHTNESS_WORDS.index(brightness))
        wanted["size"].append(-1 if size is None else captions.SIZE_WORDS.index(size))
    return {"label": np.asarray(label, np.int32), **{k: np.asarray(v, np.int32) for k, v in wanted.items()}}


# ----------------------------------------------------------------------------------------------------------
# Scoring (arrays in, arrays out)
# ----------------------------------------------------------------------------------------------------------


def class_hits(images: np.ndarray, labels: np.ndarray, class_probs: Callable[[np.ndarray], np.ndarray]
               ) -> np.ndarray:
    """bool [N]: argmax_k p(k | x_i) = labels[i], for images [N, H, W, C] in [0, 1] shown to the classifier
    in its [-1, 1] (``class_probs``: images in [-1, 1] -> [N, K] probabilities)."""
    x = np.clip(np.asarray(images, np.float32), 0.0, 1.0) * 2.0 - 1.0
    probs = np.asarray(class_probs(x))
    require(probs.ndim == 2 and probs.shape[0] == x.shape[0], f"class_probs gave shape {probs.shape} for "
                                                              f"{x.shape[0]} images; return [N, K]")
    return np.argmax(probs, axis=1) == np.asarray(labels)


def attribute_hits(images: np.ndarray, labels: np.ndarray, wanted: np.ndarray, thresholds: Any,
                   attribute: str) -> tuple[np.ndarray, np.ndarray]:
    """``(hits bool [N], named bool [N])`` for one attribute ('brightness' or 'size'): named = the image's
    prompt names a word (``wanted[i] >= 0``, its index 0 or 2), hit = named and the attribute measured on
    the image in [0, 1] against the cuts of class ``labels[i]`` (:func:`captions.measure_attributes`) is
    that index."""
    wanted = np.asarray(wanted)
    measured = captions.measure_attributes(np.clip(images, 0.0, 1.0), np.asarray(labels), thresholds)[attribute]
    named = wanted >= 0
    return named & (measured == wanted), named


def image_clip_scores(image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """float [N]: 100 · max(cos(image_i, text_i), 0), the per-pair terms whose mean is
    :func:`gm_jax.nn.clip.clip_score` (CLIPScore, Hessel et al. 2021, with w = 100)."""
    a = np.asarray(image_emb, np.float64)
    b = np.asarray(text_emb, np.float64)
    cos = np.sum(a * b, -1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
    return 100.0 * np.maximum(cos, 0.0)


def score_images(images: np.ndarray, targets: dict[str, np.ndarray], num: int, thresholds: Any,
                 class_probs: Callable[[np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    """Per-image hits of ``num`` images per prompt (prompt p's rows p·num … p·num + num − 1) in [0, 1]:
    ``class`` bool [N], ``brightness`` / ``size`` bool [N] and ``brightness_named`` / ``size_named`` bool [N]."""
    rows = {k: np.repeat(v, num) for k, v in targets.items()}
    require(rows["label"].shape[0] == np.asarray(images).shape[0],
            f"{np.asarray(images).shape[0]} images for {targets['label'].shape[0]} prompts x {num}")
    out = {"class": class_hits(images, rows["label"], class_probs)}
    for name in ("brightness", "size"):
        out[name], out[f"{name}_named"] = attribute_hits(images, rows["label"], rows[name], thresholds, name)
    return out


def summarize(hits: dict[str, np.ndarray], rows: np.ndarray | None = None) -> dict[str, Any]:
    """Accuracies of the images selected by ``rows`` (bool [N], all when None): ``class_accuracy``,
    ``brightness_accuracy`` / ``size_accuracy`` (None when no selected image's prompt names such a word),
    ``clip_score`` (None without CLIP scores) and the image counts behind each."""
    n = hits["class"].shape[0]
    rows = np.ones(n, bool) if rows is None else np.asarray(rows, bool)
    out: dict[str, Any] = {"num_images": int(rows.sum()),
                           "class_accuracy": float(hits["class"][rows].mean()) if rows.any() else None}
    for name in ("brightness", "size"):
        named = hits[f"{name}_named"] & rows
        out[f"{name}_images"] = int(named.sum())
        out[f"{name}_accuracy"] = float(hits[name][named].sum() / named.sum()) if named.any() else None
    clip = hits.get("clip_score")
    out["clip_score"] = float(clip[rows].mean()) if clip is not None and rows.any() else None
    return out


def fidelity(metrics: dict[str, Any]) -> float:
    """Mean of the defined class, brightness and size accuracies of one set (nan when none is)."""
    values = [metrics[k] for k in ACCURACIES if metrics.get(k) is not None]
    return float(np.mean(values)) if values else float("nan")


def best_guidance(results: Sequence[dict[str, Any]]) -> float:
    """The guidance whose mean fidelity over :data:`SETS` is highest (the first, i.e. smallest, of ties)."""
    scores = [np.nanmean([fidelity(r["sets"][s]) for s in SETS]) for r in results]
    scores = [-math.inf if math.isnan(v) else v for v in scores]
    return float(results[int(np.argmax(scores))]["guidance"])


# ----------------------------------------------------------------------------------------------------------
# The runs
# ----------------------------------------------------------------------------------------------------------


def parse_guidance(text: str) -> list[float]:
    """``"1,2,3"`` -> [1.0, 2.0, 3.0]: finite numbers >= 0, at least one, none repeated."""
    fix = "pass finite numbers >= 0 separated by commas, e.g. --guidance 1,2,3,4,6"
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise ConfigError(f"--guidance {text!r} is not a list of numbers; {fix}") from None
    require(all(math.isfinite(v) and v >= 0 for v in values), f"--guidance {text!r} has a value that is "
                                                               f"negative or not finite; {fix}")
    require(len(set(values)) == len(values), f"--guidance {text!r} repeats a value; {fix}")
    return values


def check_family(workdir: str, family: str, flag: str) -> Any:
    """The config of the run in ``workdir`` (read without loading it), which must be a ``family`` run."""
    from gm_jax.train.workdir import read_config

    require(os.path.isdir(workdir), f"{flag} {workdir!r} is not a directory; point it at a trained {family} run",
            CheckpointError)
    config = read_config(workdir)
    got = config.model.family
    require(got == family, f"{flag} {workdir!r} is a {got!r} run, not a {family!r} run; point it at one")
    return config


def read_thresholds(workdir: str) -> dict[str, Any]:
    """The attribute cuts ``WORKDIR/caption_thresholds.json`` of a captioned run."""
    from gm_jax.train.workdir import THRESHOLDS_FILE

    path = os.path.join(workdir, THRESHOLDS_FILE)
    require(os.path.isfile(path), f"{path} is missing; attribute accuracy needs a run trained with "
                                  "data.captions=true and data.caption_attributes=true", CheckpointError)
    try:
        with open(path) as f:
            return captions.thresholds_from_json(json.load(f))
    except (OSError, ValueError):
        raise CheckpointError(f"{path} is not readable JSON; restore it or retrain the run") from None


def clip_embedder(clip_workdir: str, dataset: str) -> Callable[[np.ndarray, Sequence[str]], np.ndarray]:
    """``scores(images in [0, 1] [N, ...], prompts [N]) -> float [N]`` of the MiniCLIP of a ``clip`` run
    (:func:`image_clip_scores` of its image and prompt embeddings)."""
    import jax

    from gm_jax.clip.family import build_model
    from gm_jax.train.workdir import load_workdir

    config = check_family(clip_workdir, "clip", "--clip_workdir")
    require(captions.class_names(str(config.data.name)) == captions.class_names(dataset),
            f"--clip_workdir was trained on {config.data.name!r}, the diffusion run on {dataset!r}; use one "
            "CLIP run of the same captions")
    run, state = load_workdir(clip_workdir)
    spec = run.pipeline.spec
    model = build_model(run.config.model, spec)
    params = jax.device_get(state.sampling_params())["clip"]
    encode_image = jax.jit(lambda p, x: model.apply({"params": p}, x, method="encode_image"))
    encode_text = jax.jit(lambda p, t, m: model.apply({"params": p}, t, m, method="encode_text"))

    def scores(images: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        tokens, mask = spec.text.encode(list(prompts))
        x = np.clip(np.asarray(images, np.float32), 0.0, 1.0) * 2.0 - 1.0
        return image_clip_scores(np.asarray(encode_image(params, x)), np.asarray(encode_text(params, tokens, mask)))

    return scores


def draw_prompts(run: Any, params: Any, prompts: Sequence[str], args: argparse.Namespace, guidance: float
                 ) -> tuple[np.ndarray, int]:
    """``args.num`` images per prompt in [0, 1] (prompt p's rows p·num …), drawn in equal chunks of at most
    ``args.max_batch`` images (the last padded with its final prompt, one compiled chain for all), each row
    keyed by its index; and the sampler's NFE."""
    from gm_jax.train.workdir import draw_samples

    lo, hi = run.pipeline.spec.value_range
    per_call = max(1, min(len(prompts), args.max_batch // args.num))
    chunks, nfe = [], 0
    for start in range(0, len(prompts), per_call):
        chunk = list(prompts[start:start + per_call])
        real = len(chunk)
        chunk += [chunk[-1]] * (per_call - real)
        x, info = draw_samples(run.family, params, args.seed, args.num, prompt=chunk, guidance=guidance,
                               sampler=args.sampler, steps=args.steps, first_index=start * args.num)
        chunks.append((np.asarray(x[:real * args.num], np.float64) - lo) / (hi - lo))
        nfe = int(info["nfe"])
    return np.concatenate(chunks), nfe


def grid_prompts(sets: dict[str, list[dict[str, Any]]], k: int = GRID_PROMPTS) -> list[str]:
    """About ``k`` prompts for the grid: half train-style, a quarter each of held-out phrasings and held-out
    combinations (fewer when a set is smaller)."""
    by_kind = {kind: [e["prompt"] for s in SETS for e in sets[s] if e["kind"] == kind]
               for kind in ("train_style", "heldout_phrasing", "heldout_combination")}
    share = {"train_style": k - 2 * (k // 4), "heldout_phrasing": k // 4, "heldout_combination": k // 4}
    return [p for kind, ps in by_kind.items() for p in ps[:share[kind]]]


def evaluate_guidance(context: dict[str, Any], guidance: float) -> dict[str, Any]:
    """Draw, score and summarize every prompt at one guidance scale; keeps the grid prompts' images."""
    t0 = time.perf_counter()
    args, prompts, num = context["args"], context["prompts"], context["args"].num
    images, nfe = draw_prompts(context["run"], context["params"], prompts, args, guidance)
    hits = score_images(images, context["targets"], num, context["thresholds"], context["class_probs"])
    if context["clip"] is not None:
        hits["clip_score"] = context["clip"](images, [p for p in prompts for _ in range(num)])
    kinds = np.repeat(np.asarray(context["kinds"]), num)
    groups = {"train_style": kinds == "train_style", "heldout": kinds != "train_style",
              "heldout_phrasing": kinds == "heldout_phrasing", "heldout_combination": kinds == "heldout_combination"}
    per_prompt = [{"prompt": p, **{m: v for m, v in summarize(hits, np.repeat(np.arange(len(prompts)) == i, num))
                                   .items() if m in METRICS}} for i, p in enumerate(prompts)]
    rows = [prompts.index(p) for p in context["grid"]]
    context["grid_images"][guidance] = np.concatenate([images[r * num:(r + 1) * num][:8] for r in rows])
    return {"guidance": guidance, "nfe": nfe, "seconds": round(time.perf_counter() - t0, 2),
            "sets": {g: summarize(hits, m) for g, m in groups.items()}, "per_prompt": per_prompt}


def load_context(args: argparse.Namespace) -> dict[str, Any]:
    """Everything the study needs, checked before any sampling: the run, its params and cuts, the prompt
    sets and targets, the classifier and (``--clip_workdir``) the CLIP scorer."""
    from gm_jax.metrics.features import load_feature_extractor
    from gm_jax.train.workdir import load_workdir

    config = check_family(args.workdir, "latent_diffusion", "--workdir")
    if args.clip_workdir:
        check_family(args.clip_workdir, "clip", "--clip_workdir")
    dataset = str(config.data.name)
    kind = caption_kind(dataset)
    thresholds = read_thresholds(args.workdir)
    require(args.num >= 1 and args.steps >= 1 and args.max_batch >= 1,
            f"--num, --steps and --max_batch must be >= 1, got {args.num}, {args.steps}, {args.max_batch}")
    run, state = load_workdir(args.workdir)
    run.family.check_sample_options({"sampler": args.sampler, "steps": args.steps, "guidance": max(args.guidance)})
    shape = tuple(run.pipeline.spec.shape)
    require(shape == (28, 28, 1), f"the classifier scores 28x28x1 images; {dataset!r} images are {shape}")
    sets = prompt_sets(dataset, args.prompts_per_set, args.seed)
    entries = [e for s in SETS for e in sets[s]]
    prompts = [e["prompt"] for e in entries]
    extractor = load_feature_extractor(CLASSIFIERS[kind])
    return {"args": args, "run": run, "params": state.sampling_params(), "step": int(state.step),
            "dataset": dataset, "thresholds": thresholds, "sets": sets, "prompts": prompts,
            "kinds": [e["kind"] for e in entries], "targets": prompt_targets(prompts, dataset),
            "class_probs": extractor.class_probs, "classifier": {"name": extractor.name,
                                                                 "sha256": extractor.checksum},
            "clip": clip_embedder(args.clip_workdir, dataset) if args.clip_workdir else None,
            "grid": grid_prompts(sets), "grid_images": {}}


# ----------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------


def plot_fidelity(results: Sequence[dict[str, Any]], path: str, title: str = "") -> str:
    """One panel per metric (accuracies, and CLIPScore when present) against guidance, one line per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in METRICS if any(r["sets"][g][m] is not None for r in results for g in GROUPS)]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.6 * len(shown), 3.4), squeeze=False)
    w = [r["guidance"] for r in results]
    for ax, metric in zip(axes[0], shown, strict=True):
        for group, style in zip(GROUPS, ("-o", "-s", ":^", ":v"), strict=True):
            y = [np.nan if r["sets"][group][metric] is None else r["sets"][group][metric] for r in results]
            ax.plot(w, y, style, label=group, markersize=4)
        if metric != "clip_score":
            ax.set_ylim(-0.02, 1.02)
            ax.axhline(0.1 if metric == "class_accuracy" else 1 / 3, color="gray", lw=0.8, ls="--")
        ax.set_xlabel("guidance w")
        ax.set_title(metric, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title or "prompt fidelity vs guidance (dashed: chance)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_outputs(context: dict[str, Any], results: list[dict[str, Any]], argv: Sequence[str],
                  seconds: float) -> dict[str, Any]:
    """``text_to_image_study.json``, ``fidelity_vs_guidance.png`` and ``prompts_grid.png`` under ``args.out``."""
    from gm_jax.train.images import save_prompt_grid

    args = context["args"]
    os.makedirs(args.out, exist_ok=True)
    best = best_guidance(results)
    grid = os.path.join(args.out, "prompts_grid.png")
    save_prompt_grid(context["grid_images"][best], context["grid"], grid, value_range=(0.0, 1.0))
    plot = plot_fidelity(results, os.path.join(args.out, "fidelity_vs_guidance.png"),
                         f"{os.path.basename(os.path.abspath(args.workdir))} step {context['step']}: "
                         f"{args.sampler} {args.steps} steps, {args.num} images/prompt (dashed: chance)")
    report = {"command": [os.path.basename(sys.argv[0]) or PROG, *argv], "workdir": os.path.abspath(args.workdir),
              "clip_workdir": os.path.abspath(args.clip_workdir) if args.clip_workdir else None,
              "step": context["step"], "dataset": context["dataset"], "sampler": args.sampler, "steps": args.steps,
              "nfe": results[0]["nfe"], "num": args.num, "seed": args.seed, "guidance": list(args.guidance),
              "classifier": context["classifier"], "seconds": round(seconds, 2), "best_guidance": best,
              "best_by": "max over guidance of the mean over train_style and heldout of the mean of class, "
                         "brightness and size accuracy",
              "prompt_sets": {s: [{**e, "class": int(c), "brightness": b, "size": z} for e, (c, b, z)
                                  in zip(context["sets"][s], (captions.parse_caption(e["prompt"], context["dataset"])
                                                              for e in context["sets"][s]), strict=True)]
                              for s in SETS},
              "num_prompts": {s: len(context["sets"][s]) for s in SETS}, "grid_prompts": context["grid"],
              "results": results, "files": {"plot": plot, "grid": grid}}
    path = os.path.join(args.out, "text_to_image_study.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    report["files"]["json"] = path
    return report


def print_table(report: dict[str, Any]) -> None:
    """A Markdown table of the accuracies per guidance and group."""
    print("| guidance | group | class acc | brightness acc | size acc | CLIPScore |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in report["results"]:
        for g in GROUPS:
            cells = ["-" if r["sets"][g][m] is None else f"{r['sets'][g][m]:.3f}" for m in METRICS]
            print(f"| {r['guidance']:g} | {g} | " + " | ".join(cells) + " |")


# ----------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``PROG: error: ...``, exit 2); also the two-object study's parser."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The command line of the module docstring."""
    p = _Parser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--workdir", required=True, help="a trained latent_diffusion run with captions")
    p.add_argument("--clip_workdir", default="", help="a trained clip run of the same captions (CLIPScore)")
    p.add_argument("--guidance", default="1,2,3,4,6", help="comma-separated guidance scales w >= 0")
    p.add_argument("--num", type=int, default=32, help="images per prompt")
    p.add_argument("--sampler", default="dpm_solver_2m")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", default="docs/figures/text_to_image_study")
    p.add_argument("--seed", type=int, default=0, help="seed of the prompt subsets and of the samples")
    p.add_argument("--prompts_per_set", type=int, default=30)
    p.add_argument("--max_batch", type=int, default=1024, help="most images per sampling call")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study; 0 on success, 2 (one line on stderr) on bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
        args.guidance = parse_guidance(args.guidance)
        t0 = time.perf_counter()
        context = load_context(args)
        results = []
        for w in args.guidance:
            results.append(evaluate_guidance(context, w))
            print(json.dumps({"guidance": w, "seconds": results[-1]["seconds"],
                              **{g: results[-1]["sets"][g] for g in SETS}}), flush=True)
        report = write_outputs(context, results, argv, time.perf_counter() - t0)
    except SystemExit as e:
        return int(e.code or 0)
    except GmJaxError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print_table(report)
    print(json.dumps(report["files"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
