"""File I/O that knows no file format: atomic writes, the JSON header codec, JSON(-lines) files.

Every writer goes through :func:`atomic_write_bytes` (a temporary file in the same folder, fsync,
rename), so a crash or kill at any moment leaves either the previous file or the new one. NumPy
archives are written with ``allow_pickle`` off and read back with it off: nothing is unpickled.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import DataError, ModelFormatError

__all__ = [
    "MAX_ARCHIVE_BYTES",
    "atomic_savez",
    "atomic_write_bytes",
    "atomic_write_text",
    "decode_header",
    "encode_header",
    "json_depth",
    "loads_header",
    "read_json",
    "read_npz",
    "read_jsonl",
    "read_npy",
    "read_npy_header",
    "write_json",
    "write_jsonl",
]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync, rename.

    A crash or kill at any moment leaves either the previous file or the new one, never a mix.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # name the file asked for, not the temporary one
        raise type(exc)(f"{path}: cannot write ({exc.strerror})") from exc
    try:
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a model or plot is meant to be shared
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_savez(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path`` atomically (the archive is built in memory, then written)."""
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(
                f"array {name!r} has dtype object, which cannot be saved without pickle"
            )
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def encode_header(header: dict) -> np.ndarray:
    """A JSON-able dict as a uint8 array (strict JSON: NaN/Inf are refused)."""
    return np.frombuffer(json.dumps(header, allow_nan=False).encode("utf-8"), dtype=np.uint8)


#: Deepest nesting of arrays and objects a header may have (ebprop writes at most ~5 levels).
MAX_HEADER_DEPTH = 32


def json_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in JSON ``text``, counted without recursion (brackets
    inside strings are skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def loads_header(text: str, source: str) -> Any:
    """``json.loads`` of a header of bounded nesting; :class:`ModelFormatError` names ``source``
    for invalid JSON or nesting deeper than :data:`MAX_HEADER_DEPTH` (never a RecursionError)."""
    if json_depth(text) > MAX_HEADER_DEPTH:
        raise ModelFormatError(
            f"{source}: header nests deeper than {MAX_HEADER_DEPTH} levels; not an ebprop header "
            "(corrupt or crafted file)"
        )
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # bad JSON, huge integers
        raise ModelFormatError(f"{source}: header is not valid JSON ({exc})") from exc


def decode_header(array: np.ndarray, source: str = "<array>") -> dict:
    """Inverse of :func:`encode_header`; raises :class:`ModelFormatError` on bad content."""
    if array.dtype != np.uint8 or array.ndim != 1:
        raise ModelFormatError(f"{source}: header must be a 1-D uint8 array, got {array.dtype}")
    try:
        text = array.tobytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFormatError(f"{source}: header is not valid UTF-8 ({exc})") from exc
    header = loads_header(text, source)
    if not isinstance(header, dict):
        raise ModelFormatError(f"{source}: header must be a JSON object")
    return header


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """The content of a JSON file; :class:`DataError` names the file when it is not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{path}: corrupt JSON ({exc}); restore the file or delete its run folder"
        ) from exc


def write_jsonl(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """Atomically write ``records`` as JSON lines (the whole file, so it is never torn)."""
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a JSON-lines file ([] when absent); a torn last line is dropped."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


#: Largest total of array bytes :func:`read_npz` allocates for one archive (the declared sizes
#: are checked before anything is read); ``$EBPROP_MAX_ARCHIVE_BYTES`` overrides it.
MAX_ARCHIVE_BYTES = 4 * 2**30

#: A zip member may expand to at most this many times its stored size (ebprop stores arrays
#: uncompressed; a higher ratio is a zip bomb) once it is larger than 1 MiB.
_MAX_EXPANSION = 20


def _archive_limit() -> int:
    value = os.environ.get("EBPROP_MAX_ARCHIVE_BYTES")
    try:
        return int(value) if value else MAX_ARCHIVE_BYTES
    except ValueError:
        raise ValueError(
            f"EBPROP_MAX_ARCHIVE_BYTES must be a number of bytes, got {value!r}"
        ) from None


def read_npy_header(fh: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from a ``.npy`` stream's header, leaving it at the data.

    Reads no array data and never unpickles; ValueError when the header is malformed.
    """
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    return np.lib.format.read_array_header_2_0(fh)


def read_npy(path: str | os.PathLike, max_bytes: int | None = None) -> np.ndarray:
    """The numeric array of a ``.npy`` file, after checking its header; never unpickles.

    Raises
    ------
    DataError
        Naming the file: not a ``.npy`` file, an array of Python objects (pickle), a header
        whose shape does not match the file's size (truncated, or a small file declaring a huge
        array), or more than ``max_bytes`` (default :data:`MAX_ARCHIVE_BYTES`).
    """
    src = str(path)
    limit = _archive_limit() if max_bytes is None else max_bytes
    try:
        with open(path, "rb") as fh:
            nbytes = _npy_data_bytes(fh, os.fstat(fh.fileno()).st_size, src, DataError)
    except OSError as exc:
        raise DataError(f"{src} is not a readable .npy file ({exc})") from exc
    if nbytes > limit:
        raise DataError(
            f"{src}: {nbytes:,} bytes, over the limit of {limit:,} (set "
            "EBPROP_MAX_ARCHIVE_BYTES to allow more)"
        )
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{src}: unreadable .npy file ({exc})") from exc


def _npy_data_bytes(fh: Any, stored: int, where: str, error: type[Exception]) -> int:
    """Bytes of the array a ``.npy`` stream declares, read from its header alone.

    ``stored`` is the size of the whole stream (header and data); ``where`` names it in messages
    (a path, or an archive's member). Raises ``error`` when the header is malformed, declares
    Python objects (they would need unpickling), or declares more or fewer bytes than are stored.
    """
    try:
        shape, _, dtype = read_npy_header(fh)
    except (ValueError, EOFError) as exc:
        raise error(f"{where} is not a .npy file ({exc}); write it with numpy.save") from exc
    if dtype.hasobject:
        raise error(
            f"{where} holds Python objects (pickle), which are never loaded; save a numeric "
            "array (e.g. numpy.save(path, x.astype(float)))"
        )
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    held = stored - fh.tell()
    if nbytes != held:
        raise error(
            f"{where} declares shape {shape} of {dtype} ({nbytes:,} bytes) but holds "
            f"{held:,} bytes (truncated or corrupt)"
        )
    return nbytes


def read_npz(
    path: str | os.PathLike, max_bytes: int | None = None, what: str = ".npz archive"
) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` file, after checking every size it declares; never unpickles.

    Before allocating anything, the zip directory's declared sizes and each ``.npy`` header's
    shape are checked: the arrays must fit ``max_bytes`` together (default
    :data:`MAX_ARCHIVE_BYTES`), a member must not expand more than 20× its stored size (a zip
    bomb), and each header's shape must match its member's size (a small file cannot declare a
    huge array).

    ``what`` names the kind of file in messages ("checkpoint", "model file").

    Raises
    ------
    ModelFormatError
        Naming the file: not a zip archive, truncated, corrupt, over a size limit.
    """
    src = str(path)
    limit = _archive_limit() if max_bytes is None else max_bytes
    try:
        with zipfile.ZipFile(path) as zf:
            members = zf.infolist()
            declared = sum(i.file_size for i in members)
            if declared > limit:
                raise ModelFormatError(
                    f"{src}: declares {declared:,} bytes of arrays, over the limit of "
                    f"{limit:,} (set EBPROP_MAX_ARCHIVE_BYTES to allow more)"
                )
            for info in members:
                if info.file_size > 2**20 and info.file_size > _MAX_EXPANSION * max(
                    info.compress_size, 1
                ):
                    raise ModelFormatError(
                        f"{src}: member {info.filename!r} expands from {info.compress_size:,} "
                        f"to {info.file_size:,} bytes; refused as a zip bomb"
                    )
                if info.filename.endswith(".npy"):
                    with zf.open(info) as fh:  # header only: no array data is read
                        where = f"{src}: member {info.filename!r}"
                        _npy_data_bytes(fh, info.file_size, where, ModelFormatError)
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except ModelFormatError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise ModelFormatError(f"{src}: unreadable {what} ({exc})") from exc
