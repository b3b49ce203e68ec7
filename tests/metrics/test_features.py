"""Feature extractor: interface, input contract, msgpack round trip and checksums, shipped weights."""

import json

import jax
import numpy as np
import pytest

from gm_jax.core.errors import ConfigError, DataError
from gm_jax.metrics import fid, prdc
from gm_jax.metrics.features import (
    CNNFeatureExtractor,
    FeatureExtractor,
    init_small_cnn,
    load_feature_extractor,
    save_feature_extractor,
    weights_paths,
)


@pytest.fixture(scope="module")
def untrained():
    return CNNFeatureExtractor("untrained", init_small_cnn(jax.random.key(0)), batch_size=8)


def test_shapes_probabilities_and_batching(untrained):
    images = np.asarray(jax.random.uniform(jax.random.key(1), (20, 28, 28, 1), minval=-1.0, maxval=1.0))
    feats, probs = untrained.features(images), untrained.class_probs(images)
    assert isinstance(untrained, FeatureExtractor)
    assert feats.shape == (20, 128) and probs.shape == (20, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(feats >= 0)  # ReLU features
    # Batches of 8 give the same rows as one image at a time.
    np.testing.assert_allclose(untrained.features(images[13:14]), feats[13:14], rtol=1e-5, atol=1e-6)


def test_input_contract_is_enforced(untrained):
    with pytest.raises(ConfigError, match=r"\[N, 28, 28, 1\]"):
        untrained.features(np.zeros((2, 32, 32, 1), np.float32))
    with pytest.raises(ConfigError, match="uint8"):
        untrained.features(np.zeros((2, 28, 28, 1), np.uint8))
    with pytest.raises(ConfigError, match=r"\[-1, 1\]"):
        untrained.features(np.full((2, 28, 28, 1), 255.0, np.float32))


def test_save_load_round_trip_and_checksums(tmp_path, untrained):
    sidecar = save_feature_extractor("mnist_cnn", untrained.params, {"test_accuracy": 0.0}, tmp_path)
    loaded = load_feature_extractor("mnist_cnn", weights_dir=tmp_path)
    assert loaded.checksum == untrained.checksum == sidecar["sha256"]
    images = np.zeros((3, 28, 28, 1), np.float32)
    np.testing.assert_array_equal(loaded.features(images), untrained.features(images))
    other = CNNFeatureExtractor("other", init_small_cnn(jax.random.key(1)))
    assert other.checksum != untrained.checksum
    # A changed weights file no longer matches its sidecar.
    msgpack_path, _ = weights_paths("mnist_cnn", tmp_path)
    blob = bytearray(msgpack_path.read_bytes())
    blob[-1] ^= 1
    msgpack_path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="sha256"):
        load_feature_extractor("mnist_cnn", weights_dir=tmp_path)


def test_missing_weights_and_unknown_names(tmp_path):
    with pytest.raises(DataError, match="train_feature_classifier.py --dataset fashion_mnist"):
        load_feature_extractor("fashion_mnist_cnn", weights_dir=tmp_path)
    with pytest.raises(ConfigError, match="fashion_mnist_cnn, mnist_cnn"):
        load_feature_extractor("inception_v3")


def test_shipped_fashion_mnist_weights(data_dir):
    from gm_jax.data import load_arrays

    extractor = load_feature_extractor("fashion_mnist_cnn")
    _, json_path = weights_paths("fashion_mnist_cnn")
    assert extractor.checksum == json.loads(json_path.read_text())["sha256"]
    # The embedded subset's test images come from the Fashion-MNIST test split (unseen in training).
    test = load_arrays("fashion_mnist_small", "test", data_dir=data_dir)
    images = test.x[:500].astype(np.float32) / 127.5 - 1.0
    probs = extractor.class_probs(images)
    accuracy = float(np.mean(np.argmax(probs, axis=1) == test.label[:500]))
    assert accuracy > 0.85, accuracy
    # Features separate real images from uniform noise: FID, recall and coverage order them correctly.
    # (Precision does not: the noise features collapse into a region inside the real k-NN balls.)
    real_a, real_b = extractor.features(images[:250]), extractor.features(images[250:])
    noise = extractor.features(np.asarray(jax.random.uniform(jax.random.key(2), (250, 28, 28, 1),
                                                             minval=-1.0, maxval=1.0)))
    assert fid(real_a, real_b) < 0.2 * fid(real_a, noise)
    real_scores, noise_scores = prdc(real_a, real_b, k=5), prdc(real_a, noise, k=5)
    assert real_scores["recall"] > 0.5 > noise_scores["recall"]
    assert real_scores["coverage"] > 0.5 > noise_scores["coverage"]


def test_shipped_mnist_weights_match_their_sidecar():
    extractor = load_feature_extractor("mnist_cnn")
    _, json_path = weights_paths("mnist_cnn")
    sidecar = json.loads(json_path.read_text())
    assert extractor.checksum == sidecar["sha256"]
    assert sidecar["test_accuracy"] > 0.98 and sidecar["test_examples"] == 10000
    assert extractor.checksum != load_feature_extractor("fashion_mnist_cnn").checksum
