"""Latent against pixel diffusion on Fashion-MNIST (issue 15): sampling time per image and FID of a text-to-image
latent diffusion run next to a pixel-space class-conditional DDPM, measured in one process with the same
sampler, steps, number of samples and real images.

    python experiments/latent_vs_pixel.py --latent_workdir runs/ldm_text --pixel_pretrained ddpm_fashion_mnist \\
        [--num 1000] [--chunk 250] [--sampler dpm_solver_2m] [--steps 20] [--out runs/latent_vs_pixel.json]

(``--pixel_workdir RUN`` instead of ``--pixel_pretrained NAME``.) Each model draws ``--num`` samples whose
classes cycle 0..9: the latent model from the prompts "a photo of a {class}" (its default when no prompt is
given), the pixel model from the labels, each at its own default guidance. FID is computed against the first
``--num`` test images in the shipped ``fashion_mnist_cnn`` feature space; the floor (two disjoint sets of
``--num`` test images) is reported beside it, with the fraction of samples classified as their class.
Seconds per image exclude compilation (the best chunk after a warm-up call). Training cost per image comes
from the runs' own records when given: ``--latent_train_cpu_s`` / ``--pixel_train_cpu_s`` (CPU seconds of the
training command) with each run's steps and batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np


def load(workdir: str | None, pretrained: str | None) -> tuple[Any, Any]:
    if pretrained:
        from gm_jax.pretrained.loading import pretrained_run

        return pretrained_run(pretrained)
    from gm_jax.train.workdir import load_workdir

    return load_workdir(workdir)


def draw(run: Any, params: Any, num: int, chunk: int, labels: bool, options: dict[str, Any]
         ) -> tuple[np.ndarray, float, int]:
    """``num`` samples (classes cycling 0..9) in chunks; the best seconds per image over the chunks after a
    warm-up call of one chunk."""
    from gm_jax.train.workdir import draw_samples

    def call(start: int) -> tuple[np.ndarray, dict]:
        extra = {"label": (np.arange(start, start + chunk) % 10).astype(np.int32)} if labels else {}
        return draw_samples(run.family, params, 0, chunk, first_index=start, **extra, **options)

    call(0)  # compile
    parts, best, nfe = [], float("inf"), 0
    for start in range(0, num, chunk):
        t0 = time.perf_counter()
        x, info = call(start)
        best = min(best, (time.perf_counter() - t0) / chunk)
        parts.append(x)
        nfe = int(np.max(info.get("nfe", 0)))
    return np.concatenate(parts)[:num], best, nfe


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--latent_workdir", required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pixel_pretrained")
    src.add_argument("--pixel_workdir")
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--chunk", type=int, default=250)
    p.add_argument("--sampler", default="dpm_solver_2m")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--latent_train_cpu_s", type=float, default=0.0)
    p.add_argument("--pixel_train_cpu_s", type=float, default=0.0)
    p.add_argument("--out", default="runs/latent_vs_pixel.json")
    args = p.parse_args()
    if args.num % args.chunk:
        p.error("--num must be a multiple of --chunk")

    from gm_jax.metrics import fid, load_feature_extractor
    from gm_jax.train.compile_cache import enable_compilation_cache
    from gm_jax.train.quality import real_images, to_extractor_range

    enable_compilation_cache()
    extractor = load_feature_extractor("fashion_mnist_cnn")
    runs = {"latent": load(args.latent_workdir, None), "pixel": load(args.pixel_workdir, args.pixel_pretrained)}
    spec = runs["pixel"][0].pipeline.spec
    real = to_extractor_range(real_images(runs["pixel"][0], 2 * args.num), spec.value_range)
    f_real = extractor.features(real)
    payload: dict[str, Any] = {"command": " ".join(sys.argv), "num": args.num, "sampler": args.sampler,
                               "steps": args.steps, "floor_fid": float(fid(f_real[:args.num], f_real[args.num:]))}
    cpu = {"latent": args.latent_train_cpu_s, "pixel": args.pixel_train_cpu_s}
    for name, (run, state) in runs.items():
        options = run.family.check_sample_options({"sampler": args.sampler, "steps": args.steps})
        x, per_image, nfe = draw(run, state.sampling_params(), args.num, args.chunk, name == "pixel", options)
        x = to_extractor_range(x, run.pipeline.spec.value_range)
        correct = np.argmax(extractor.class_probs(x), axis=-1) == np.arange(args.num) % 10
        record = {"train_step": int(state.step), "batch_size": int(run.config.data.batch_size),
                  "guidance": float(run.config.model.guidance), "nfe": nfe, "seconds_per_image": per_image,
                  "fid": float(fid(f_real[:args.num], extractor.features(x))), "accuracy": float(np.mean(correct))}
        if cpu[name] > 0:
            record["train_cpu_s"] = cpu[name]
            record["train_images_per_cpu_s"] = record["train_step"] * record["batch_size"] / cpu[name]
        payload[name] = record
        print(name, json.dumps(record), flush=True)
    payload["sampling_speedup_latent_over_pixel"] = (payload["pixel"]["seconds_per_image"]
                                                     / payload["latent"]["seconds_per_image"])
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(payload, f, indent=2)
    print(json.dumps({k: v for k, v in payload.items() if k not in ("latent", "pixel")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
