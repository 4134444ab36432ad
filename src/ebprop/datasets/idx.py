"""Read and write IDX files, the format of the MNIST-family datasets.

An IDX file is a 4-byte magic number (two zero bytes, a dtype code, the number of dimensions),
then one big-endian ``uint32`` per dimension, then the array in C order, big-endian. Files may be
gzip-compressed; the reader detects gzip by its magic bytes, not by the file name.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ebprop.datasets.base import MAX_ARRAY_BYTES
from ebprop.exceptions import DataError

__all__ = [
    "IDX_DTYPES",
    "decompress",
    "idx_content",
    "parse_idx",
    "read_idx",
    "read_idx_bytes",
    "write_idx",
]

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
_CHUNK = 1 << 20  # bytes decompressed per step
_HEADER_PEEK = 4 + 4 * 255  # enough for the largest IDX header


def _gunzip(raw: bytes, source: str, cap: Callable[[bytes], int], checked: bool) -> bytes:
    """Stream-decompress ``raw``, stopping one byte past ``cap(head)``.

    ``head`` is the first ``_HEADER_PEEK`` decompressed bytes (fewer if the stream is shorter);
    ``cap`` returns the most bytes to produce. One byte past the cap is returned, so the caller
    can tell "exactly the cap" from "more". When the cap is a size already ``checked`` against
    a limit (an IDX header's), the rest is read in one call, allocated once; otherwise in
    1 MiB chunks, so nothing larger than the data actually present is ever allocated.
    """
    parts: list[bytes] = []
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            head = stream.read(_HEADER_PEEK)
            parts.append(head)
            got, limit = len(head), cap(head)
            while got <= limit:
                want = limit + 1 - got if checked else min(_CHUNK, limit + 1 - got)
                chunk = stream.read(want)
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
    except EOFError as exc:
        raise DataError(f"{source}: truncated gzip file ({exc}); delete it, fetch again") from exc
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise DataError(f"{source}: corrupt gzip file ({exc}); delete it, fetch again") from exc
    return parts[0] if len(parts) == 1 else b"".join(parts)


def decompress(raw: bytes, source: str = "<bytes>", max_bytes: int = MAX_ARRAY_BYTES) -> bytes:
    """Gunzip ``raw`` when it starts with the gzip magic bytes; return it unchanged otherwise.

    Decompression streams and stops past ``max_bytes`` of output, so a small file cannot expand
    to gigabytes in memory.

    Parameters
    ----------
    raw : bytes
        A file's bytes.
    source : str
        Name used in error messages (usually the file path).
    max_bytes : int
        Largest decompressed size accepted.

    Raises
    ------
    DataError
        If the gzip stream is truncated or corrupt, or expands beyond ``max_bytes``.
    """
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    content = _gunzip(raw, source, lambda head: max_bytes, checked=False)
    if len(content) > max_bytes:
        raise DataError(
            f"{source}: decompresses to more than {max_bytes} bytes (the limit); "
            "not a dataset file, or raise max_bytes"
        )
    return content


def idx_content(raw: bytes, source: str = "<bytes>", max_bytes: int = MAX_ARRAY_BYTES) -> bytes:
    """The uncompressed content of a plain or gzipped IDX file, decompressing no more than needed.

    For gzip, the header is decompressed first; its dimensions times the item size are checked
    against ``max_bytes`` before anything else is decompressed, and decompression stops one byte
    past the size the header declares (so trailing data is detected without expanding it).

    Raises
    ------
    DataError
        If the gzip stream is corrupt, or the header declares more than ``max_bytes``.
    """
    if not raw.startswith(_GZIP_MAGIC):
        _declared_size(raw, source, max_bytes)
        return raw

    def cap(head: bytes) -> int:
        declared = _declared_size(head, source, max_bytes)
        return len(head) if declared is None else declared

    return _gunzip(raw, source, cap, checked=True)


def _declared_size(head: bytes, source: str, max_bytes: int) -> int | None:
    """Total file size (header + payload) an IDX header declares; None when ``head`` is too short
    to tell (parse_idx then reports it).

    Raises
    ------
    DataError
        If the payload the header declares exceeds ``max_bytes``.
    """
    if len(head) < 4 or head[0] or head[1] or head[2] not in IDX_DTYPES:
        return None
    ndim = head[3]
    if len(head) < 4 + 4 * ndim or ndim == 0:
        return None
    dims = [int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    payload = math.prod(dims) * IDX_DTYPES[head[2]].itemsize  # Python ints: no overflow
    if payload > max_bytes:
        raise DataError(
            f"{source}: IDX header declares dims {tuple(dims)} = {payload} bytes, above the "
            f"limit of {max_bytes} bytes; the file is corrupt or not a dataset "
            "(pass a larger max_bytes if it is genuine)"
        )
    return 4 + 4 * ndim + payload


def read_idx_bytes(path: str | os.PathLike, max_bytes: int = MAX_ARRAY_BYTES) -> bytes:
    """Return the uncompressed content of a plain or gzip-compressed IDX file.

    Raises
    ------
    DataError
        If the gzip stream is truncated or corrupt, or the header declares more than
        ``max_bytes``.
    FileNotFoundError
        If ``path`` does not exist.
    """
    return idx_content(Path(path).read_bytes(), str(path), max_bytes)


def parse_idx(
    content: bytes, source: str = "<bytes>", max_bytes: int = MAX_ARRAY_BYTES
) -> np.ndarray:
    """Parse uncompressed IDX content into an array.

    Parameters
    ----------
    content : bytes
        The uncompressed IDX file content.
    source : str
        Name used in error messages (usually the file path).
    max_bytes : int
        Largest payload accepted (dimensions times item size, checked before allocating).

    Returns
    -------
    numpy.ndarray
        A writable array in native byte order, shape given by the header.

    Raises
    ------
    DataError
        On a bad magic number, an unknown dtype code, a payload above ``max_bytes``, or a payload
        whose size does not match the dimensions in the header.
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
    _declared_size(content[:header], source, max_bytes)
    dims = tuple(int(d) for d in np.frombuffer(content, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    actual = len(content) - header
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"{source}: IDX payload {what}: header dims {dims} of {dtype.name} need "
            f"{expected} bytes, file has {actual if actual < expected else 'more'}"
        )
    array = np.frombuffer(content, dtype=dtype, offset=header).reshape(dims)
    # astype copies into a writable, native-endian array
    return array.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike, max_bytes: int = MAX_ARRAY_BYTES) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed).

    Parameters
    ----------
    path : str or PathLike
        The file to read.
    max_bytes : int
        Largest payload accepted; the header is checked before the payload is decompressed.

    Returns
    -------
    numpy.ndarray
        The array, in native byte order, with the shape stored in the header.

    Raises
    ------
    DataError
        If the file is truncated, corrupt, not a valid IDX file, or declares more than
        ``max_bytes``; the message names the file.
    """
    return parse_idx(read_idx_bytes(path, max_bytes), str(path), max_bytes)


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
