"""Train a VAE (or resume its run) and report its test NLL by importance sampling (IWAE bound, k samples,
Burda et al. 2016) over the whole test split, with the CPU time of training and of evaluation.

    python experiments/vae_nll.py --config experiments/configs/vae_binarized_mnist.py \
        --workdir runs/vae_mnist --k 1000

Writes WORKDIR/nll.json. Reference: Burda et al. 2016, VAE with one stochastic layer, k = 5000: 86.76 nats.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

from gm_jax.core.rng import purpose_key
from gm_jax.train.config import apply_overrides, load_config_file
from gm_jax.train.families import build_family
from gm_jax.train.loop import train
from gm_jax.train.workdir import load_workdir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--k", type=int, default=1000, help="importance samples per test image")
    p.add_argument("--chunk", type=int, default=100, help="samples per chunk (memory)")
    p.add_argument("--num_test", type=int, default=0, help="test images (0: all)")
    args, overrides = p.parse_known_args()

    config = apply_overrides(load_config_file(args.config), overrides)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    train(config, args.workdir)
    train_cpu, train_wall = time.process_time() - cpu0, time.perf_counter() - wall0

    run, state = load_workdir(args.workdir)
    eval_config = apply_overrides(run.config, [f"--config.model.eval_iwae_k={args.k}",
                                               f"--config.model.iwae_chunk={args.chunk}"])
    family = build_family(eval_config, run.pipeline.spec)
    evaluate = jax.jit(family.evaluate)
    key = purpose_key(state.rng, "iwae_nll")
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sums: dict[str, float] = {}
    n = 0
    for i, batch in enumerate(run.pipeline.eval_batches(500)):
        if args.num_test and n >= args.num_test:
            break
        metrics = evaluate(state.sampling_params(), batch, jax.random.fold_in(key, i))
        b = len(batch["x"])
        for name, v in metrics.items():
            sums[name] = sums.get(name, 0.0) + float(v) * b
        n += b
    result = {name: v / n for name, v in sums.items()}
    result.update(k=args.k, num_test=n, step=int(state.step), train_cpu_s=round(train_cpu, 1),
                  train_wall_s=round(train_wall, 1), eval_cpu_s=round(time.process_time() - cpu0, 1),
                  eval_wall_s=round(time.perf_counter() - wall0, 1), device=jax.devices()[0].device_kind,
                  reference_nats="86.76 (Burda et al. 2016, VAE, 1 stochastic layer, k=5000)")
    with open(os.path.join(args.workdir, "nll.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    assert np.isfinite(result["nll_iwae"])


if __name__ == "__main__":
    main()
