"""Reference values of the sample-quality metrics: real training images against real test images
(10k vs 10k by default) in the shipped feature network's space — the floor a perfect model would reach.

    python experiments/metric_floor.py --dataset fashion_mnist --num 10000 --out runs/metric_floor.json
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import numpy as np

from gm_jax.data import load_arrays
from gm_jax.metrics import fid, inception_score, kid, load_feature_extractor, prdc

EXTRACTORS = {"fashion_mnist": "fashion_mnist_cnn", "mnist": "mnist_cnn"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion_mnist", choices=sorted(EXTRACTORS))
    p.add_argument("--num", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/metric_floor.json")
    args = p.parse_args()

    extractor = load_feature_extractor(EXTRACTORS[args.dataset])
    rng = np.random.default_rng(args.seed)
    images = {}
    for split in ("train", "test"):
        x = load_arrays(args.dataset, split).x
        idx = rng.choice(len(x), args.num, replace=False) if args.num < len(x) else np.arange(len(x))
        images[split] = x[idx].astype(np.float32) / 127.5 - 1.0
    f_train, f_test = extractor.features(images["train"]), extractor.features(images["test"])
    kid_mean, kid_std = kid(f_train, f_test, jax.random.key(args.seed), num_subsets=100,
                            subset_size=min(1000, args.num))
    is_mean, is_std = inception_score(extractor.class_probs(images["test"]), num_splits=10)
    result = {"dataset": args.dataset, "num": args.num, "extractor": extractor.name,
              "checksum": extractor.checksum, "fid_train_vs_test": fid(f_train, f_test),
              "kid_train_vs_test": float(kid_mean), "kid_std": float(kid_std),
              "inception_score_test": float(is_mean), "inception_score_std": float(is_std),
              **{f"{k}_train_vs_test": float(v) for k, v in prdc(f_train[:5000], f_test[:5000], k=5).items()}}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
