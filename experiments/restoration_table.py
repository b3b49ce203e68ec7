"""Zero-shot restoration with a trained diffusion prior on Fashion-MNIST test images (issue 16): PSNR, SSIM,
FID, measurement consistency, NFE and time per image for every posterior sampler on every task.

    python experiments/restoration_table.py --pretrained ddpm_fashion_mnist --out runs/restoration \\
        [--num 250] [--steps 50] [--tasks box,random50,sr2,sr4] [--methods repaint,ddnm,ddrm,pigdm,dps] \\
        [--sigma_y 0] [--resample 1] [--chunk 125] [--seed 0] [--deadline UNIX_SECONDS] \
        [--models RUN,RUN,...]

(``--workdir RUN`` instead of ``--pretrained NAME`` for a run of one's own.) Tasks: ``box`` (the centred
14×14 box unobserved), ``randomP`` (each pixel observed with probability P/100, one mask drawn from
``--seed`` for all images), ``srS`` (×S average pooling), ``blur`` (Gaussian blur, σ = 1 pixel). The first
``--num`` images of the test split are the ground truth; y = A x + σ_y ε. Every method draws one posterior
sample per image with ``--steps`` steps, the model's unconditional denoiser (no label: zero-shot), and its
declared defaults (DDRM η = 0.85, η_b = 1; DPS ζ = 1) except RePaint's ``--resample`` (default 1: NFE
2·steps − 1). Baselines: A⁺y (the measurement put back in image space: observed pixels and zeros, or
nearest-neighbour upsampling) and, for super-resolution, bicubic upsampling of y (Keys 1981).

``--models``: work directories of trained restoration models — a Pix2Pix inpainting GAN, SRGANs, SR3 models
(``experiments/configs/sr3_fashion_mnist_cpu.py``) — each run on every task its family accepts (its own
method: ``pix2pix``, ``srgan``, ``sr3``, with the run's defaults; a task it cannot do is skipped, e.g. an SRGAN
×2 on ×4 pooling), on the same measurements, next to the zero-shot methods.

Per method: PSNR and SSIM (:mod:`gm_jax.metrics.image_quality`, images in [−1, 1], R = 2; mean and standard
error over images), FID of the restorations against the ground-truth images in the shipped
``fashion_mnist_cnn`` feature space, next to the FID floor of two disjoint sets of ``--num`` test images
(FID from a few hundred images is biased upwards), the consistency error RMS(A x̂ − y), the NFE and the seconds
per image (compile excluded: the median over chunks after the first). Writes ``OUT/restoration_table.json``
(rewritten after every method), ``OUT/restoration_table.md`` and one grid per task ``OUT/grid_TASK.png``
(rows: ground truth, A⁺y, then each method; the first 10 images).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np

PROG = "restoration_table"
MASK_TASKS = ("box", "random")


def operator_for(task: str, shape: tuple[int, ...], seed: int) -> Any:
    """The task's linear operator on images of ``shape`` (H, W, C)."""
    from gm_jax.core.errors import ConfigError
    from gm_jax.diffusion import operators
    from gm_jax.train.restore import mask_from_kind

    if task == "box":
        return mask_from_kind("box", shape)
    if task.startswith("random") and task[6:].isdigit():
        return mask_from_kind(f"random:{int(task[6:]) / 100}", shape, seed)
    if task.startswith("sr") and task[2:].isdigit():
        return operators.downsample(shape, int(task[2:]))
    if task == "blur":
        return operators.blur(shape, 1.0)
    raise ConfigError(f"unknown task {task!r}; use box, randomP (P in 1..99), srS or blur")


def is_mask(task: str) -> bool:
    return task.startswith(MASK_TASKS)


def image_scores(ctx: dict[str, Any], x_hat: np.ndarray, y: np.ndarray, op: Any) -> dict[str, Any]:
    """PSNR/SSIM (mean, SE), FID against the ground truth, RMS(A x̂ − y)."""
    import jax.numpy as jnp

    from gm_jax.metrics import fid, psnr, ssim
    from gm_jax.train.quality import to_extractor_range

    truth = jnp.asarray(ctx["truth"])
    p = np.asarray(psnr(jnp.asarray(x_hat), truth))
    s = np.asarray(ssim(jnp.asarray(x_hat), truth))
    feats = ctx["extractor"].features(to_extractor_range(x_hat, ctx["value_range"]))
    residual = np.asarray(op.A(jnp.asarray(x_hat))) - y
    se = np.sqrt(len(p))
    return {"psnr": float(p.mean()), "psnr_se": float(p.std() / se), "ssim": float(s.mean()),
            "ssim_se": float(s.std() / se), "fid": float(fid(ctx["f_truth"], feats)),
            "consistency_rms": float(np.sqrt(np.mean(residual ** 2)))}


def baselines(ctx: dict[str, Any], task: str, op: Any, y: np.ndarray) -> dict[str, np.ndarray]:
    """A⁺y, and bicubic upsampling of y for super-resolution."""
    import jax
    import jax.numpy as jnp

    out = {"pinv": np.asarray(op.pinv(jnp.asarray(y)))}
    if task.startswith("sr"):
        b, h, w, c = ctx["truth"].shape
        out["bicubic"] = np.asarray(jax.image.resize(jnp.asarray(y), (b, h, w, c), "bicubic"))
    return out


def run_method(ctx: dict[str, Any], method: str, op: Any, y: np.ndarray, args: argparse.Namespace
               ) -> tuple[np.ndarray, int, float]:
    """One posterior draw per image, ``--chunk`` images per compiled call (image i keyed by index i, so the
    draws do not depend on the chunk size); returns the draws, the NFE and the seconds per image."""
    from gm_jax.core.rng import purpose_key, seed_key

    key = purpose_key(seed_key(args.seed), "restore")
    parts, nfe, times = [], 0, []
    given = {"steps": args.steps, "sigma_y": args.sigma_y}
    if method == "repaint":
        given["resample"] = args.resample
    options = ctx["family"].check_restore_options(given)
    for start in range(0, len(y), args.chunk):
        t0 = time.perf_counter()
        x, info = ctx["family"].restore(ctx["params"], key, y[start:start + args.chunk], op, method, 1,
                                        first_index=start, **options)
        x = np.asarray(x)[0]
        times.append((time.perf_counter() - t0) / len(x))
        parts.append(x)
        nfe = int(info["nfe"])
    later = times[1:] or times
    return np.concatenate(parts), nfe, float(np.median(later))


def load_models(args: argparse.Namespace, spec: Any) -> list[dict[str, Any]]:
    """The ``--models`` runs: family, sampling parameters and own method (the default of its ``method``
    restoration option); one line for a run that cannot restore or draws images of another shape or range."""
    from gm_jax.core.errors import ConfigError
    from gm_jax.train.workdir import load_workdir

    out = []
    for workdir in args.models:
        run, state = load_workdir(workdir)
        family = run.family
        if not family.can_restore:
            raise ConfigError(f"--models {workdir}: family {family.name!r} cannot restore")
        other = run.pipeline.spec
        if tuple(other.shape) != tuple(spec.shape) or tuple(other.value_range) != tuple(spec.value_range):
            raise ConfigError(f"--models {workdir}: images {other.shape} in {other.value_range}, the prior's are "
                              f"{spec.shape} in {spec.value_range}; train it on the same data")
        method = next(o.default for o in family.restore_options if o.name == "method")
        out.append({"workdir": workdir, "family": family, "params": state.sampling_params(), "method": method,
                    "step": int(state.step)})
    return out


def run_model(model: dict[str, Any], op: Any, y: np.ndarray, args: argparse.Namespace
              ) -> tuple[np.ndarray, int, float] | None:
    """A trained model's restorations of ``y`` (as :func:`run_method`, the model's own method and defaults), or
    None when its family refuses the operator (a task it was not trained for)."""
    from gm_jax.core.errors import ConfigError
    from gm_jax.core.rng import purpose_key, seed_key

    key = purpose_key(seed_key(args.seed), "restore")
    parts, nfe, times = [], 0, []
    for start in range(0, len(y), args.chunk):
        t0 = time.perf_counter()
        try:
            x, info = model["family"].restore(model["params"], key, y[start:start + args.chunk], op, model["method"],
                                              1, first_index=start)
        except ConfigError:
            return None
        parts.append(np.asarray(x)[0])
        times.append((time.perf_counter() - t0) / len(parts[-1]))
        nfe = int(info["nfe"])
    return np.concatenate(parts), nfe, float(np.median(times[1:] or times))


def context(args: argparse.Namespace) -> dict[str, Any]:
    """The model, the ground truth (first ``--num`` test images), its features and the FID floor."""
    from gm_jax.metrics import fid, load_feature_extractor
    from gm_jax.train.quality import real_images, to_extractor_range

    if args.pretrained:
        from gm_jax.pretrained.loading import pretrained_run

        run, state = pretrained_run(args.pretrained)
    else:
        from gm_jax.train.workdir import load_workdir

        run, state = load_workdir(args.workdir)
    spec = run.pipeline.spec
    extractor = load_feature_extractor("fashion_mnist_cnn")
    real = real_images(run, 2 * args.num)
    f_real = extractor.features(to_extractor_range(real, spec.value_range))
    return {"family": run.family, "params": state.sampling_params(), "step": int(state.step),
            "value_range": spec.value_range, "shape": tuple(spec.shape), "truth": real[:args.num],
            "extractor": extractor, "f_truth": f_real[:args.num],
            "floor_fid": float(fid(f_real[:args.num], f_real[args.num:])), "models": load_models(args, spec)}


def markdown(payload: dict[str, Any]) -> str:
    lines = [f"FID floor (two sets of {payload['num']} test images): {payload['floor_fid']:.2f}", "",
             "| task | method | NFE | PSNR (dB) | SSIM | FID | RMS(A x̂ − y) | s / image |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in payload["records"]:
        lines.append(f"| {r['task']} | {r['method']} | {r.get('nfe', 0)} | {r['psnr']:.2f} ± {r['psnr_se']:.2f} | "
                     f"{r['ssim']:.3f} ± {r['ssim_se']:.3f} | {r['fid']:.1f} | {r['consistency_rms']:.2g} | "
                     f"{r.get('seconds_per_image', 0):.3f} |")
    return "\n".join(lines) + "\n"


def write(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    with open(os.path.join(args.out, "restoration_table.json"), "w") as f:
        json.dump(payload, f, indent=2)
    with open(os.path.join(args.out, "restoration_table.md"), "w") as f:
        f.write(markdown(payload))


def measure_task(ctx: dict[str, Any], task: str, args: argparse.Namespace, payload: dict[str, Any]) -> None:
    """Every baseline and applicable method on one task; one grid."""
    from gm_jax.train.images import save_image_grid
    from gm_jax.train.restore import measure

    op = operator_for(task, ctx["shape"], args.seed)
    y = measure(op, ctx["truth"], args.sigma_y, args.seed)
    rows = [ctx["truth"][:10]]
    for name, x_hat in baselines(ctx, task, op, y).items():
        payload["records"].append({"task": task, "method": name, "nfe": 0, **image_scores(ctx, x_hat, y, op)})
        rows.append(x_hat[:10])
    for method in args.methods:
        if method == "repaint" and not is_mask(task):
            continue
        if args.deadline and time.time() > args.deadline:
            payload["skipped"].append({"task": task, "method": method})
            continue
        x_hat, nfe, per_image = run_method(ctx, method, op, y, args)
        record = {"task": task, "method": method, "nfe": nfe, "seconds_per_image": per_image,
                  **image_scores(ctx, x_hat, y, op)}
        payload["records"].append(record)
        print(json.dumps(record), flush=True)
        rows.append(x_hat[:10])
        write(args, payload)
    for model in ctx["models"]:
        result = run_model(model, op, y, args)
        if result is None:
            continue
        x_hat, nfe, per_image = result
        record = {"task": task, "method": model["method"], "model": model["workdir"], "model_step": model["step"],
                  "nfe": nfe, "seconds_per_image": per_image, **image_scores(ctx, x_hat, y, op)}
        payload["records"].append(record)
        print(json.dumps(record), flush=True)
        rows.append(x_hat[:10])
        write(args, payload)
    save_image_grid(np.concatenate(rows), os.path.join(args.out, f"grid_{task}.png"), ctx["value_range"], ncols=10)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pretrained", help="a shipped model, e.g. ddpm_fashion_mnist")
    src.add_argument("--workdir", help="a trained image diffusion run")
    p.add_argument("--out", required=True)
    p.add_argument("--num", type=int, default=250, help="test images (the FID floor uses twice as many)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--tasks", default="box,random50,sr2,sr4")
    p.add_argument("--methods", default="repaint,ddnm,ddrm,pigdm,dps")
    p.add_argument("--sigma_y", type=float, default=0.0)
    p.add_argument("--resample", type=int, default=1, help="RePaint's resampling steps per level")
    p.add_argument("--chunk", type=int, default=125, help="images per compiled call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--deadline", type=float, default=0.0, help="unix seconds; later methods are skipped")
    p.add_argument("--models", default="", help="comma-separated work directories of trained restoration models "
                   "(Pix2Pix inpainting, SRGAN, SR3), each run on the tasks it can do")
    args = p.parse_args(argv)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    for name in ("num", "steps", "chunk"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    from gm_jax.core.errors import GmJaxError
    from gm_jax.diffusion.inverse import INVERSE_SAMPLERS
    from gm_jax.train.compile_cache import enable_compilation_cache

    args = parse_args(argv)
    try:
        unknown = [m for m in args.methods if m not in INVERSE_SAMPLERS]
        if unknown:
            raise GmJaxError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(INVERSE_SAMPLERS)}")
        for task in args.tasks:
            operator_for(task, (28, 28, 1), args.seed)
        enable_compilation_cache()
        os.makedirs(args.out, exist_ok=True)
        ctx = context(args)
        payload: dict[str, Any] = {"command": " ".join(sys.argv), "num": args.num, "steps": args.steps,
                                   "sigma_y": args.sigma_y, "train_step": ctx["step"],
                                   "floor_fid": ctx["floor_fid"], "extractor": "fashion_mnist_cnn",
                                   "records": [], "skipped": []}
        for task in args.tasks:
            measure_task(ctx, task, args, payload)
        write(args, payload)
    except GmJaxError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
