"""Test NLL of a trained RBM by annealed importance sampling of log Z (Salakhutdinov & Murray 2008).

Loads the run's latest checkpoint, takes the AIS base model from the training marginals (the base-rate
model, Salakhutdinov & Murray 2008 sec. 4.1), and runs AIS several times: every (num_betas, seed) pair of
``--betas`` x ``--seeds``. Two runs that agree within their error bars, and agreement across schedule
lengths, are the check that the schedule and the number of chains are enough. The NLL is
``mean_v F(v) + log Z`` over the whole eval split (the run's static binarized sample for dynamic runs).

    python experiments/rbm_ais_nll.py --workdir runs/rbm_mnist --betas 1000,14500 --seeds 0,1

Writes ``<workdir>/ais_nll.json`` and prints a Markdown table (CPU seconds are process time of each AIS run).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.classical import rbm
from gm_jax.data import load_arrays
from gm_jax.train.workdir import load_workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--betas", default="1000,14500", help="comma-separated AIS schedule lengths")
    parser.add_argument("--seeds", default="0,1", help="comma-separated AIS seeds")
    parser.add_argument("--chains", type=int, default=100)
    parser.add_argument("--schedule", default="sm08", choices=("linear", "sm08"))
    args = parser.parse_args()

    run, state = load_workdir(args.workdir)
    params = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), state.sampling_params())
    cfg = run.config
    train = load_arrays(cfg.data.name, "train", cfg.data.get("data_dir") or None, cfg.data.get("source_dir") or None)
    # base rates from the expected training marginals E[v_i] = pixel_i / 255 of the binarized data
    base = rbm.base_rate_visible_bias(jnp.asarray(train.x.reshape(train.num_examples, -1) / 255.0))
    test = np.concatenate([b["x"] for b in run.pipeline.eval_batches(10000)])
    test = jnp.asarray(test.reshape(test.shape[0], -1), jnp.float32)
    mean_f = float(jnp.mean(rbm.free_energy(params, test)))

    rows = []
    for num_betas in (int(b) for b in args.betas.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            t0 = time.process_time()
            log_z, stderr = rbm.ais_log_partition(params, jax.random.key(seed), base, args.chains, num_betas,
                                                  args.schedule)
            log_z, stderr = float(log_z), float(stderr)
            rows.append({"num_betas": num_betas, "seed": seed, "chains": args.chains, "schedule": args.schedule,
                         "log_z": log_z, "log_z_stderr": stderr, "test_nll": mean_f + log_z,
                         "cpu_s": time.process_time() - t0})
    out = {"step": int(state.step), "num_test": int(test.shape[0]), "mean_free_energy": mean_f, "ais": rows}
    with open(os.path.join(args.workdir, "ais_nll.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"RBM at step {out['step']}, {out['num_test']} test images, mean F(v) = {mean_f:.3f}")
    print("| AIS betas (schedule) | chains | seed | log Z ± s.e. | test NLL (nats) | CPU s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['num_betas']} ({r['schedule']}) | {r['chains']} | {r['seed']} | {r['log_z']:.2f} ± "
              f"{r['log_z_stderr']:.2f} | {r['test_nll']:.2f} | {r['cpu_s']:.0f} |")


if __name__ == "__main__":
    main()
