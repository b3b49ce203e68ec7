"""Feature networks for sample-quality metrics (FID, KID, IS, PRDC).

A metric needs two things from a network: an embedding of each image (``features``, the input of
FID/KID/PRDC) and class probabilities (``class_probs``, the input of the Inception Score). Any object with
the attributes of :class:`FeatureExtractor` can be used, e.g. an Inception-v3 whose weights a user loads
from a local file (nothing is ever downloaded here).

Ours is :class:`SmallCNN`, a three-layer convolutional classifier for 28x28x1 images, trained by
``experiments/train_feature_classifier.py`` on Fashion-MNIST or MNIST. Its weights live in
``gm_jax/metrics/weights/<name>.msgpack`` (flax msgpack serialization, no pickle) with a JSON sidecar
``<name>.json`` recording the test accuracy, the sha256 of the msgpack file and the training command.

Input contract of :class:`CNNFeatureExtractor`: float images of shape ``[N, 28, 28, 1]`` with values in
``[-1, 1]`` (uint8 pixels ``p`` map to ``p / 127.5 - 1``). Other shapes or ranges raise a ConfigError; the
caller resizes or converts channels explicitly (e.g. ``jax.image.resize`` or a mean over RGB).
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from typing import Any, Protocol, runtime_checkable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from gm_jax.core.errors import DataError, check_choice, require

WEIGHTS_DIR = pathlib.Path(__file__).resolve().parent / "weights"
KNOWN_EXTRACTORS = ("fashion_mnist_cnn", "mnist_cnn")
IMAGE_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


@runtime_checkable
class FeatureExtractor(Protocol):
    """What the sample-quality metrics need from a feature network.

    ``name``: identifies the network in reports; ``checksum``: sha256 of its weights, so that two scores
    are only compared when computed with the same network; ``features(images) -> [N, F]`` float embeddings;
    ``class_probs(images) -> [N, K]`` rows that sum to one.
    """

    name: str
    checksum: str

    def features(self, images: Any) -> np.ndarray: ...

    def class_probs(self, images: Any) -> np.ndarray: ...


class SmallCNN(nn.Module):
    """Three 3x3 conv layers (32, 64, 64 channels; ReLU; 2x2 max pooling after each), a dense
    penultimate layer of ``feature_dim`` ReLU units (the features) and a linear layer to class logits."""

    feature_dim: int = 128
    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x``: [N, 28, 28, 1] in [-1, 1]. Returns ``(features [N, feature_dim], logits [N, K])``."""
        for channels in (32, 64, 64):
            x = nn.relu(nn.Conv(channels, (3, 3))(x))
            x = nn.max_pool(x, (2, 2), strides=(2, 2))  # 28 -> 14 -> 7 -> 3
        x = x.reshape((x.shape[0], -1))
        features = nn.relu(nn.Dense(self.feature_dim)(x))
        logits = nn.Dense(self.num_classes)(features)
        return features, logits


def check_cnn_images(images: Any) -> jnp.ndarray:
    """Validate the input contract of :class:`CNNFeatureExtractor` and return float32 images.

    Requires shape ``[N, 28, 28, 1]``, a floating dtype and values in ``[-1, 1]``; nothing is resized,
    re-ranged or converted silently.
    """
    x = np.asarray(images)
    require(x.ndim == 4 and tuple(x.shape[1:]) == IMAGE_SHAPE,
            f"feature extractor expects images of shape [N, 28, 28, 1], got {list(x.shape)}; "
            "resize (jax.image.resize) or convert channels (mean over RGB) before calling it")
    require(np.issubdtype(x.dtype, np.floating),
            f"feature extractor expects float images in [-1, 1], got dtype {x.dtype}; "
            "convert uint8 pixels p with p / 127.5 - 1")
    if x.size:
        lo, hi = float(x.min()), float(x.max())
        require(lo >= -1.0 - 1e-3 and hi <= 1.0 + 1e-3,
                f"feature extractor expects values in [-1, 1], got range [{lo:.3g}, {hi:.3g}]; "
                "map [0, 1] images with 2 * x - 1 and uint8 pixels p with p / 127.5 - 1")
    return jnp.asarray(x, jnp.float32)


def params_checksum(params: Any) -> str:
    """sha256 (hex) of the msgpack serialization of ``params``."""
    return hashlib.sha256(serialization.to_bytes(jax.device_get(params))).hexdigest()


class CNNFeatureExtractor:
    """A :class:`FeatureExtractor` backed by :class:`SmallCNN` parameters.

    Images are processed in batches of ``batch_size`` by one jitted forward pass; results are float32
    numpy arrays on the host.
    """

    def __init__(self, name: str, params: Any, feature_dim: int = 128, batch_size: int = 500):
        require(batch_size > 0, f"batch_size must be > 0, got {batch_size}")
        self.name = name
        self.params = params
        self.checksum = params_checksum(params)
        self.batch_size = int(batch_size)
        self.feature_dim = int(feature_dim)
        model = SmallCNN(feature_dim=feature_dim)
        self._forward = jax.jit(lambda p, x: model.apply({"params": p}, x))

    def _run(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        x = check_cnn_images(images)
        feats, logits = [], []
        for start in range(0, x.shape[0], self.batch_size):
            f, lg = self._forward(self.params, x[start:start + self.batch_size])
            feats.append(np.asarray(f))
            logits.append(np.asarray(lg))
        if not feats:
            return np.zeros((0, self.feature_dim), np.float32), np.zeros((0, NUM_CLASSES), np.float32)
        return np.concatenate(feats), np.concatenate(logits)

    def features(self, images: Any) -> np.ndarray:
        """Penultimate-layer activations ``[N, feature_dim]`` of images ``[N, 28, 28, 1]`` in [-1, 1]."""
        return self._run(images)[0]

    def class_probs(self, images: Any) -> np.ndarray:
        """Softmax class probabilities ``[N, 10]`` of images ``[N, 28, 28, 1]`` in [-1, 1]."""
        logits = self._run(images)[1]
        return np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1))


def init_small_cnn(key: jax.Array, feature_dim: int = 128) -> Any:
    """Freshly initialised :class:`SmallCNN` parameters (for training or tests)."""
    return SmallCNN(feature_dim=feature_dim).init(key, jnp.zeros((1, *IMAGE_SHAPE)))["params"]


def weights_paths(name: str, weights_dir: str | pathlib.Path | None = None) -> tuple[pathlib.Path, ...]:
    """Paths ``(<dir>/<name>.msgpack, <dir>/<name>.json)`` of a shipped feature network."""
    root = pathlib.Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    return root / f"{name}.msgpack", root / f"{name}.json"


def save_feature_extractor(name: str, params: Any, info: dict[str, Any],
                           weights_dir: str | pathlib.Path | None = None) -> dict[str, Any]:
    """Write ``params`` as msgpack and a JSON sidecar (``info`` plus name and sha256); returns the sidecar."""
    msgpack_path, json_path = weights_paths(name, weights_dir)
    msgpack_path.parent.mkdir(parents=True, exist_ok=True)
    blob = serialization.to_bytes(jax.device_get(params))
    msgpack_path.write_bytes(blob)
    sidecar = {"name": name, **info, "sha256": hashlib.sha256(blob).hexdigest()}
    json_path.write_text(json.dumps(sidecar, indent=2) + "\n")
    return sidecar


def load_feature_extractor(name: str, weights_dir: str | pathlib.Path | None = None,
                           batch_size: int = 500) -> CNNFeatureExtractor:
    """Load a shipped feature network ("fashion_mnist_cnn" or "mnist_cnn") from its msgpack weights.

    The file's sha256 must match its JSON sidecar. Raises DataError when the weights are absent or corrupt.
    """
    check_choice("feature extractor", name, KNOWN_EXTRACTORS)
    msgpack_path, json_path = weights_paths(name, weights_dir)
    dataset = name.removesuffix("_cnn")
    require(msgpack_path.is_file() and json_path.is_file(),
            f"weights of feature extractor {name!r} not found at {msgpack_path}; train them with "
            f"`python experiments/train_feature_classifier.py --dataset {dataset}`", DataError)
    blob = msgpack_path.read_bytes()
    sidecar = json.loads(json_path.read_text())
    digest = hashlib.sha256(blob).hexdigest()
    require(digest == sidecar.get("sha256"),
            f"weights {msgpack_path} have sha256 {digest[:12]}… but {json_path.name} records "
            f"{str(sidecar.get('sha256'))[:12]}…; retrain or restore the file", DataError)
    feature_dim = int(sidecar.get("feature_dim", 128))
    template = init_small_cnn(jax.random.key(0), feature_dim)
    try:
        params = serialization.from_bytes(template, blob)
    except (ValueError, KeyError) as err:
        raise DataError(f"weights {msgpack_path} do not fit SmallCNN(feature_dim={feature_dim}): {err}; "
                        "retrain them") from err
    return CNNFeatureExtractor(name, params, feature_dim=feature_dim, batch_size=batch_size)


__all__ = ["CNNFeatureExtractor", "FeatureExtractor", "KNOWN_EXTRACTORS", "SmallCNN",
           "check_cnn_images", "init_small_cnn", "load_feature_extractor", "params_checksum",
           "save_feature_extractor", "weights_paths"]
