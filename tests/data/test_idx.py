"""IDX reader/writer: round trips, the header bytes of the MNIST format, and bad files."""

import gzip
import struct

import numpy as np
import pytest

from gm_jax.core.errors import DataError
from gm_jax.data.idx import parse_idx, read_idx, write_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(3, 5, 4)) * 50).astype(dtype)
    path = tmp_path / f"a-idx3-ubyte{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_header_matches_the_mnist_format(tmp_path):
    # LeCun's format: 0x00 0x00, type byte 0x08 (ubyte), ndim, big-endian uint32 dims, then raw bytes.
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x", images)
    expected = bytes([0, 0, 0x08, 3]) + struct.pack(">III", 2, 3, 4) + images.tobytes()
    assert (tmp_path / "x").read_bytes() == expected
    ints = np.array([1, -2, 70000], np.int32)
    write_idx(tmp_path / "y.gz", ints)
    raw = gzip.decompress((tmp_path / "y.gz").read_bytes())
    assert raw == bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 3) + struct.pack(">iii", 1, -2, 70000)


def test_hand_written_file_is_read(tmp_path):
    labels = [7, 2, 1, 0, 4]
    (tmp_path / "labels").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + bytes(labels))
    np.testing.assert_array_equal(read_idx(tmp_path / "labels"), labels)


def test_bad_files_raise_one_line_data_error():
    with pytest.raises(DataError) as bad_magic:
        parse_idx(b"\x01\x02\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(DataError) as truncated:
        parse_idx(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + bytes(3))
    for err in (bad_magic, truncated):
        assert "\n" not in str(err.value)
