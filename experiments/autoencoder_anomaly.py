"""Anomaly detection with a held-out class: train an autoencoder on every Fashion-MNIST class but one, score
test images by reconstruction error, report the ROC AUC of "held-out class vs. the rest". Uses the library's
pure functions directly (no CLI), as a user would from Python.

    python experiments/autoencoder_anomaly.py --held_out 1 --kind denoising --steps 1500 --out runs/anomaly
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from gm_jax.autoencoders.anomaly import held_out_class_auc, reconstruction_error, split_held_out_class
from gm_jax.autoencoders.family import build_model, make_family, model_defaults
from gm_jax.autoencoders.sample import reconstruct
from gm_jax.core import DataSpec, seed_key, step_key
from gm_jax.data import load_arrays
from gm_jax.train.config import base_config
from gm_jax.train.images import save_image_grid


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion_mnist_small")
    p.add_argument("--held_out", type=int, default=1, help="class treated as the anomaly")
    p.add_argument("--kind", default="vanilla", choices=["vanilla", "denoising", "sparse"])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/anomaly")
    args = p.parse_args()

    train, test = load_arrays(args.dataset, "train"), load_arrays(args.dataset, "test")
    x_train = split_held_out_class(train.x, train.label, args.held_out).astype(np.float32) / 255.0
    x_test = test.x.astype(np.float32) / 255.0

    config = base_config()
    config.model = model_defaults()
    config.model.update(family="autoencoder", kind=args.kind, arch="conv", channels=(32, 64), latent_dim=16,
                        decoder="gaussian")
    spec = DataSpec(shape=x_train.shape[1:], num_classes=10, value_range=(0.0, 1.0), levels=256)
    family = make_family(config, spec)
    root = seed_key(args.seed)
    state = family.init(root, {"x": x_train[:args.batch_size]})
    step = jax.jit(family.train_step, donate_argnums=0)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    for s in range(args.steps):
        idx = rng.integers(0, len(x_train), args.batch_size)
        state, metrics = step(state, {"x": x_train[idx]}, step_key(root, s))
    train_s = time.perf_counter() - t0

    model = build_model(config.model, spec)
    recon = jax.jit(lambda prm, x: reconstruct(model, prm, x))
    scores = jnp.concatenate([reconstruction_error(x_test[i:i + 500], recon(state.params, x_test[i:i + 500]))
                              for i in range(0, len(x_test), 500)])
    result = {k: float(v) for k, v in held_out_class_auc(scores, test.label, args.held_out).items()}
    result.update(dataset=args.dataset, held_out=args.held_out, kind=args.kind, steps=args.steps,
                  final_loss=float(metrics["loss"]), train_seconds=round(train_s, 1))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"anomaly_class{args.held_out}_{args.kind}.json"), "w") as f:
        json.dump(result, f, indent=2)
    pairs = np.concatenate([x_test[:16], np.asarray(recon(state.params, x_test[:16]))])
    save_image_grid(pairs, os.path.join(args.out, f"reconstructions_{args.kind}.png"), (0, 1), ncols=16)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
