"""FID vs NFE and classifier accuracy of a trained class-conditional Fashion-MNIST diffusion run (issues 17/18).

For every sampler and NFE target it draws ``--num`` samples (labels cycled 0..9, drawn in chunks of ``--chunk``
with per-example keys, so the samples do not depend on the chunk size), at the run's default guidance unless
``--guidance`` is given, and records: FID against the first ``--num`` eval images in the shipped
``fashion_mnist_cnn`` feature space (what ``gm-jax eval --metrics fid`` and
``gm_jax.bench.samplers.fid_vs_nfe`` use; not Inception), and the fraction of samples that the same network
classifies as their label (overall and per label). The eval-vs-eval FID floor at the same number of images
(eval images num..2·num-1 against 0..num-1) is recorded next to them, since FID from a few hundred images is
biased upwards. One 10×10 sample grid (columns are the labels) is saved per sampler at the ``--grid_nfe``
target. Points are measured NFE target by NFE target (``--nfe`` order) and skipped once ``--deadline`` (unix
seconds) has passed; the JSON is rewritten after every point.

    python experiments/gallery_ddpm_measure.py --workdir /work/runs_keep/ddpm_gallery --out runs/gallery_measure \\
        --num 500 --nfe 20,50,10 \\
        --samplers euler,heun,dpm_solver_2m,ddim,lms,deis,unipc,ddpm
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

DETERMINISTIC = ("euler", "heun", "dpm_solver_2m", "ddim", "lms", "deis", "unipc")


def steps_for(sampler: str, nfe: int) -> int:
    """Steps whose NFE is at most ``nfe``: Heun's 2·steps − 1 evaluations, one per step for the others."""
    return max((nfe + 1) // 2, 1) if sampler == "heun" else nfe


def draw(run: Any, params: Any, num: int, chunk: int, seed: int, **options: Any) -> tuple[np.ndarray, int]:
    """``num`` samples drawn ``chunk`` at a time (sample i keyed by index i) and the sampler's NFE."""
    from gm_jax.train.workdir import draw_samples

    labels = (np.arange(num) % 10).astype(np.int32)
    parts, nfe = [], 0
    for start in range(0, num, chunk):
        n = min(chunk, num - start)
        x, info = draw_samples(run.family, params, seed, chunk, first_index=start,
                               label=np.resize(labels[start:start + n], chunk), **options)
        parts.append(x[:n])
        nfe = int(info["nfe"])
    return np.concatenate(parts), nfe


def scores(extractor: Any, fake: np.ndarray, f_real: np.ndarray, value_range: tuple[float, float]
           ) -> dict[str, Any]:
    """FID to the real features and label accuracy (overall, per label) of samples whose labels cycle 0..9."""
    from gm_jax.metrics import fid
    from gm_jax.train.quality import to_extractor_range

    x = to_extractor_range(fake, value_range)
    labels = np.arange(len(x)) % 10
    correct = np.argmax(extractor.class_probs(x), axis=-1) == labels
    per_label = [float(np.mean(correct[labels == k])) for k in range(10)]
    return {"fid": float(fid(f_real, extractor.features(x))), "accuracy": float(np.mean(correct)),
            "accuracy_per_label": per_label}


def floor_fid(run: Any, extractor: Any, num: int) -> float:
    """FID between two disjoint sets of ``num`` eval images (the value of a perfect model at this size)."""
    from gm_jax.metrics import fid
    from gm_jax.train.quality import real_images, to_extractor_range

    real = to_extractor_range(real_images(run, 2 * num), run.pipeline.spec.value_range)
    return float(fid(extractor.features(real[:num]), extractor.features(real[num:])))


def measure_point(ctx: dict[str, Any], sampler: str, target: int, args: argparse.Namespace) -> dict[str, Any]:
    """One (sampler, NFE target) record; saves the sample grid at ``--grid_nfe``."""
    from gm_jax.train.images import save_image_grid

    run, spec = ctx["run"], ctx["run"].pipeline.spec
    t0 = time.perf_counter()
    given = run.family.check_sample_options({"sampler": sampler, "steps": steps_for(sampler, target),
                                             "guidance": ctx["guidance"]})
    fake, nfe = draw(run, ctx["params"], args.num, args.chunk, args.seed, **given)
    record = {"sampler": sampler, "steps": int(given["steps"]), "nfe": nfe, "num": args.num,
              "guidance": ctx["guidance"], "train_step": ctx["step"], "deterministic": sampler in DETERMINISTIC,
              **scores(ctx["extractor"], fake, ctx["f_real"], spec.value_range)}
    if target == args.grid_nfe:
        save_image_grid(fake[:100], os.path.join(args.out, f"grid_{sampler}_nfe{target}.png"), spec.value_range,
                        ncols=10)
    record["seconds"] = time.perf_counter() - t0
    return record


def context(args: argparse.Namespace) -> dict[str, Any]:
    """The loaded run, its sampling parameters, the feature network, the real features, the guidance."""
    from gm_jax.metrics import load_feature_extractor
    from gm_jax.train.quality import real_images, to_extractor_range
    from gm_jax.train.workdir import load_workdir

    run, state = load_workdir(args.workdir)
    extractor = load_feature_extractor("fashion_mnist_cnn")
    real = to_extractor_range(real_images(run, args.num), run.pipeline.spec.value_range)
    guidance = args.guidance if args.guidance > 0 else float(run.config.model.guidance)
    return {"run": run, "params": state.sampling_params(), "step": int(state.step), "extractor": extractor,
            "f_real": extractor.features(real), "guidance": guidance}


def write(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    from gm_jax.bench.report import plot_quality_vs_nfe

    with open(os.path.join(args.out, "fid_vs_nfe.json"), "w") as f:
        json.dump(payload, f, indent=2)
    if payload["records"]:
        plot_quality_vs_nfe([], os.path.join(args.out, "fid_vs_nfe.png"), payload["records"])


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--num", type=int, default=500, help="samples (and real eval images) per point")
    p.add_argument("--chunk", type=int, default=250, help="samples per compiled call")
    p.add_argument("--nfe", default="20,50,10", help="NFE targets, measured in this order")
    p.add_argument("--samplers", default=",".join(DETERMINISTIC + ("ddpm",)))
    p.add_argument("--guidance", type=float, default=0.0, help="0: the run's model.guidance")
    p.add_argument("--grid_nfe", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deadline", type=float, default=0.0, help="unix seconds; later points are skipped")
    p.add_argument("--no_floor", action="store_true", help="skip the eval-vs-eval FID floor")
    return p.parse_args()


def main() -> None:
    from gm_jax.train.compile_cache import enable_compilation_cache

    args = parse_args()
    enable_compilation_cache()
    os.makedirs(args.out, exist_ok=True)
    ctx = context(args)
    payload: dict[str, Any] = {"workdir": args.workdir, "train_step": ctx["step"], "num": args.num,
                               "guidance": ctx["guidance"], "extractor": "fashion_mnist_cnn", "records": [],
                               "skipped": []}
    if not args.no_floor:
        payload["floor_fid_eval_vs_eval"] = floor_fid(ctx["run"], ctx["extractor"], args.num)
    for target in (int(v) for v in args.nfe.split(",")):
        for sampler in (s.strip() for s in args.samplers.split(",") if s.strip()):
            if args.deadline and time.time() > args.deadline:
                payload["skipped"].append({"sampler": sampler, "nfe_target": target})
                continue
            record = measure_point(ctx, sampler, target, args)
            payload["records"].append(record)
            print(json.dumps({k: v for k, v in record.items() if k != "accuracy_per_label"}), flush=True)
            write(args, payload)
    write(args, payload)


if __name__ == "__main__":
    main()
