"""Read and write IDX files, the format of the MNIST-family datasets.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number of dimensions),
then one big-endian ``uint32`` per dimension, then the array in C order, big-endian. Files may be
gzip-compressed; the reader detects gzip by its magic bytes, not by the file name.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ebprop.exceptions import DataError

__all__ = ["IDX_DTYPES", "decompress", "parse_idx", "read_idx", "read_idx_bytes", "write_idx"]

#: IDX dtype code -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def decompress(raw: bytes, source: str = "<bytes>") -> bytes:
    """Gunzip ``raw`` when it starts with the gzip magic bytes; return it unchanged otherwise.

    Parameters
    ----------
    raw : bytes
        A file's bytes.
    source : str
        Name used in error messages (usually the file path).

    Raises
    ------
    DataError
        If the gzip stream is truncated or corrupt.
    """
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as exc:
        raise DataError(f"{source}: truncated gzip file ({exc}); delete it, fetch again") from exc
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise DataError(f"{source}: corrupt gzip file ({exc}); delete it, fetch again") from exc


def read_idx_bytes(path: str | os.PathLike) -> bytes:
    """Return the uncompressed content of a plain or gzip-compressed IDX file.

    Raises
    ------
    DataError
        If the gzip stream is truncated or corrupt.
    FileNotFoundError
        If ``path`` does not exist.
    """
    return decompress(Path(path).read_bytes(), str(path))


def parse_idx(content: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse uncompressed IDX content into an array.

    Parameters
    ----------
    content : bytes
        The uncompressed IDX file content.
    source : str
        Name used in error messages (usually the file path).

    Returns
    -------
    numpy.ndarray
        A writable array in native byte order, shape given by the header.

    Raises
    ------
    DataError
        On a bad magic number, an unknown dtype code, or a payload whose size does not match the
        dimensions in the header.
    """
    if len(content) < 4:
        raise DataError(f"{source}: not an IDX file (only {len(content)} bytes, header needs 4)")
    zero0, zero1, code, ndim = content[:4]
    if zero0 != 0 or zero1 != 0:
        raise DataError(
            f"{source}: bad IDX magic number 0x{content[:4].hex()} (must start with two zero bytes)"
        )
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(f"{source}: unknown IDX dtype code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise DataError(f"{source}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(f"{source}: truncated IDX header ({len(content)} bytes, needs {header})")
    dims = tuple(int(d) for d in np.frombuffer(content, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    actual = len(content) - header
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"{source}: IDX payload {what}: header dims {dims} of {dtype.name} need "
            f"{expected} bytes, file has {actual}"
        )
    array = np.frombuffer(content, dtype=dtype, offset=header).reshape(dims)
    # astype copies into a writable, native-endian array
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed).

    Parameters
    ----------
    path : str or PathLike
        The file to read.

    Returns
    -------
    numpy.ndarray
        The array, in native byte order, with the shape stored in the header.

    Raises
    ------
    DataError
        If the file is truncated, corrupt, or not a valid IDX file; the message names the file.
    """
    return parse_idx(read_idx_bytes(path), source=str(path))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends with ``.gz``.

    Parameters
    ----------
    path : str or PathLike
        Destination file.
    array : numpy.ndarray
        Array of dtype uint8, int8, int16, int32, float32 or float64, with 1 to 255 dimensions.

    Raises
    ------
    ValueError
        If the dtype or the number of dimensions cannot be stored in IDX.
    """
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        known = sorted(map(str, codes))
        raise ValueError(f"IDX cannot store dtype {array.dtype}; use one of {known}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX stores 1 to 255 dimensions, got {array.ndim}")
    header = bytes([0, 0, codes[native], array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    content = header + np.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        content = gzip.compress(content)
    path.write_bytes(content)
