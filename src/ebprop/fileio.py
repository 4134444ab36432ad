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
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import ModelFormatError

__all__ = [
    "atomic_savez",
    "atomic_write_bytes",
    "atomic_write_text",
    "decode_header",
    "encode_header",
    "read_json",
    "read_jsonl",
    "write_json",
    "write_jsonl",
]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync, rename.

    A crash or kill at any moment leaves either the previous file or the new one, never a mix.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


def decode_header(array: np.ndarray, source: str = "<array>") -> dict:
    """Inverse of :func:`encode_header`; raises :class:`ModelFormatError` on bad content."""
    if array.dtype != np.uint8 or array.ndim != 1:
        raise ModelFormatError(f"{source}: header must be a 1-D uint8 array, got {array.dtype}")
    try:
        header = json.loads(array.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{source}: header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise ModelFormatError(f"{source}: header must be a JSON object")
    return header


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """The content of a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


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
