"""IDX files, the format of (Fashion-)MNIST: a big-endian header (dtype code, shape), then the raw array;
``.gz`` files are gunzipped on reading and gzipped on writing.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from .._io import atomic_write_bytes

__all__ = ["read_idx", "write_idx"]

_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format: big-endian header, then the raw array); ``.gz`` is gunzipped.

    Returns:
        The array with the shape and dtype the header declares (uint8 for (Fashion-)MNIST), read-only.

    Raises:
        ValueError: not an IDX file, or its size does not match the header (truncated download).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
        >>> _ = path.write_bytes(bytes([0, 0, 0x08, 1]) + (3).to_bytes(4, "big") + bytes([9, 0, 3]))
        >>> read_idx(path)
        array([9, 0, 3], dtype=uint8)
        >>> _ = path.write_bytes(path.read_bytes()[:-1])
        >>> read_idx(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: ...labels-idx1-ubyte: 10 bytes, but its header (3,) needs 11 (truncated?)
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"cannot read IDX file {path}: {err}") from err
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (magic bytes {data[:4].hex() or 'missing'})")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: {len(data)} bytes, but its header {shape} needs {expected} (truncated?)")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzipped if ``path`` ends in ``.gz``), atomically; returns the path.

    The inverse of :func:`read_idx`. dtypes: uint8, int8, and big-endian int16/int32/float32/float64
    (native-endian arrays are converted).

    Raises:
        ValueError: a dtype IDX cannot hold, or more than 255 dimensions.

    Example:
        >>> import tempfile
        >>> cube = np.arange(8, dtype=np.uint8).reshape(2, 2, 2)
        >>> path = write_idx(Path(tempfile.mkdtemp()) / "x-idx3-ubyte.gz", cube)
        >>> read_idx(path).shape, read_idx(path)[1].tolist()
        ((2, 2, 2), [[4, 5], [6, 7]])
    """
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder(">") if np.dtype(v).itemsize > 1 else np.dtype(v): k
             for k, v in _IDX_DTYPES.items()}  # fmt: skip
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if dtype not in codes or array.ndim > 255:
        raise ValueError(f"IDX cannot hold a {array.dtype} array of {array.ndim} dimensions")
    header = bytes([0, 0, codes[dtype], array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(dtype, copy=False).tobytes()
    path = Path(path)
    atomic_write_bytes(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path
