"""The issue-8 comparison table from trained work directories: test likelihood (bits/dim, nats), time to sample
64 images (first call incl. compilation, then a second call), training CPU time (WORKDIR/budget_run.json
written by experiments/budget_train.py), and a 64-sample grid per model for docs/figures/.

    nice -n 15 python experiments/exact_table.py --out runs/exact/table.json \
        pixelcnn=runs/exact/pixelcnn_mnist:0 glow=runs/exact/glow_fmnist:0 \
        flow_matching=runs/exact/fm_fmnist:2 vqvae_prior=runs/exact/vqprior_fmnist:0

Each argument is NAME=WORKDIR:EVAL_BATCHES (0: the whole test split, in batches of the run's
train.eval_batch_size). For a VQ-VAE prior run the reconstructions of stage 1 are saved as well.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

from gm_jax.train.images import save_samples
from gm_jax.train.loop import evaluate
from gm_jax.train.workdir import draw_samples, load_workdir


def timed_samples(run, state, num: int = 64, calls: int = 2) -> tuple[np.ndarray, dict]:
    """Draw ``num`` samples ``calls`` times (seed 0): wall and CPU seconds of the first call (with
    compilation) and, if ``calls`` is 2, of the second (compiled)."""
    out = {}
    for tag in ("first", "second")[:calls]:
        w0, c0 = time.perf_counter(), time.process_time()
        x, info = draw_samples(run.family, state.sampling_params(), 0, num)
        jax.block_until_ready(x)
        out[f"{tag}_wall_s"] = round(time.perf_counter() - w0, 2)
        out[f"{tag}_cpu_s"] = round(time.process_time() - c0, 2)
    out["nfe"] = info.get("nfe")
    return x, out


def save_reconstructions(run, state, path: str, num: int = 32) -> None:
    """Test images (odd rows) over their VQ-VAE reconstructions D(e_k(x)) (even rows), 8 per row."""
    from gm_jax.vq.model import VQVAE

    with open(os.path.join(run.config.model.prior_of, "config.json")) as f:
        m1 = json.load(f)["model"]
    x = next(iter(run.pipeline.eval_batches(num)))["x"][:num]
    net = VQVAE(tuple(m1["channels"]), int(m1["code_dim"]), x.shape[-1])
    vq = state.params["vqvae"]
    k = net.apply(vq["net"], x, vq["codebook"], method=VQVAE.encode)
    x_hat = np.clip(np.asarray(net.apply(vq["net"], k, vq["codebook"], method=VQVAE.decode)), -1, 1)
    rows = [a for i in range(0, num, 8) for a in (x[i:i + 8], x_hat[i:i + 8])]
    save_samples(np.concatenate(rows), path, run.pipeline.spec.value_range)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("runs", nargs="+", help="NAME=WORKDIR:EVAL_BATCHES")
    p.add_argument("--out", default="runs/exact/table.json")
    p.add_argument("--figures", default="docs/figures")
    p.add_argument("--sample_calls", type=int, choices=(1, 2), default=2,
                   help="time the 64-sample draw once (with compilation) or twice")
    args = p.parse_args()
    results = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            results = json.load(f)
    for item in args.runs:
        name, rest = item.split("=", 1)
        workdir, batches = rest.rsplit(":", 1)
        run, state = load_workdir(workdir)
        entry: dict = {"workdir": workdir, "step": int(state.step), "family": run.config.model.family}
        budget = os.path.join(workdir, "budget_run.json")
        if os.path.exists(budget):
            with open(budget) as f:
                entry["training"] = json.load(f)
        c0 = time.process_time()
        entry["eval"] = evaluate(run, state, int(batches))
        entry["eval_cpu_s"] = round(time.process_time() - c0, 1)
        bs = run.config.train.get("eval_batch_size", 0) or run.config.data.batch_size
        entry["eval_images"] = (int(batches) * bs) if int(batches) else "whole test split (full batches)"
        x, entry["sampling_64"] = timed_samples(run, state, calls=args.sample_calls)
        prefix = {"pixelcnn": "pixelcnn", "flow": "flow", "flow_matching": "fm", "vqvae": "vq"}.get(
            run.config.model.family, name)
        save_samples(x, os.path.join(args.figures, f"{prefix}_{name}_samples.png"), run.pipeline.spec.value_range)
        if run.config.model.family == "vqvae" and run.config.model.get("prior_of", ""):
            save_reconstructions(run, state, os.path.join(args.figures, f"vq_{name}_reconstructions.png"))
        results[name] = entry
        print(name, json.dumps(entry), flush=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
