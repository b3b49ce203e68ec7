"""Reader and writer of the IDX format (LeCun et al. 1998, the MNIST file format).

An IDX file is: two zero bytes, one byte naming the element type, one byte giving the number of
dimensions ``d``, ``d`` big-endian uint32 sizes, then the elements in C order, big-endian.
Files ending in ``.gz`` are read and written through gzip.
"""

from __future__ import annotations

import gzip
import os

import numpy as np

from gm_jax.core.errors import DataError

# type byte -> big-endian numpy dtype (MNIST's file format description)
_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}


def _open(path: str, mode: str):
    return gzip.open(path, mode) if str(path).endswith(".gz") else open(path, mode)


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of one IDX file into a native-endian array (LeCun et al. 1998, IDX format)."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"{name} is not an IDX file (bad magic number); pass the original MNIST-format files")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) - offset != count * dtype.itemsize:
        raise DataError(f"{name} is truncated: header says shape {shape} but the file holds "
                        f"{len(data) - offset} data bytes; download it again")
    return np.frombuffer(data, dtype, count=count, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into a native-endian numpy array."""
    with _open(os.fspath(path), "rb") as f:
        return parse_idx(f.read(), os.fspath(path))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``)."""
    array = np.asarray(array)
    dtype = array.dtype.newbyteorder("=")
    if dtype not in _IDX_CODES:
        raise DataError(f"IDX cannot store dtype {array.dtype}; use uint8, int8, int16, int32, float32 or float64")
    header = bytes([0, 0, _IDX_CODES[dtype], array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    body = np.ascontiguousarray(array, dtype.newbyteorder(">")).tobytes()
    if str(path).endswith(".gz"):
        # mtime=0 keeps the compressed bytes reproducible
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
            f.write(header + body)
    else:
        with open(path, "wb") as f:
            f.write(header + body)
