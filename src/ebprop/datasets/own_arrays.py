"""Your own data as arrays: an ``.npz`` or a folder of IDX files, read and checked.

:func:`npz_arrays` and :func:`idx_arrays` return an :class:`OwnArrays` (samples, labels as
indices into the sorted class names, ``max_value``, checksums); :mod:`ebprop.datasets.own`
holds out the splits. ``.npz`` files are read without unpickling, each member's header checked
before anything is allocated.
"""

from __future__ import annotations

import hashlib
import math
import os
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ebprop.datasets.base import MAX_ARRAY_BYTES
from ebprop.datasets.idx import read_idx
from ebprop.exceptions import DataError
from ebprop.fileio import read_npy_header

__all__ = ["IDX_NAMES", "NPZ_KEYS", "OwnArrays", "idx_arrays", "idx_file", "npz_arrays", "read_npz"]

#: Members an .npz may hold.
NPZ_KEYS = ("X_train", "y_train", "X_test", "y_test", "max_value")
#: The IDX files of a folder in MNIST's layout: (images, labels) of train, then of test.
IDX_NAMES = (
    ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
)
_NATIVE_MAX = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535, np.dtype(np.bool_): 1}
_READ_CHUNK = 1 << 24  # bytes per read of an .npz member


class OwnArrays(NamedTuple):
    """Checked arrays of your own data, before the splits are held out.

    ``y_train``/``y_test`` are int indices into ``class_names``; ``X_test``/``y_test`` None when
    the data has no test set; ``max_value`` None for features.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: tuple[str, ...]
    max_value: int | float | None
    checksums: dict[str, str]


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, source: str, max_bytes: int):
    """One .npy member of an .npz, its header checked before any allocation; never unpickles."""
    key = info.filename[: -len(".npy")]
    with zf.open(info) as f:
        try:
            shape, fortran, dtype = read_npy_header(f)
        except ValueError as exc:
            raise DataError(f"{source}: member {key} is not a valid .npy array ({exc})") from exc
        if dtype.hasobject:
            raise DataError(
                f"{source}: {key} is an object array, which would need unpickling; store "
                f"string labels as a unicode array, e.g. np.savez(..., {key}=np.asarray(labels, "
                "dtype=str))"
            )
        count = math.prod(shape)
        size = count * dtype.itemsize
        if size > max_bytes:
            raise DataError(
                f"{source}: {key} declares shape {shape} of {dtype} = {size} bytes, above the "
                f"limit of {max_bytes} bytes (pass a larger max_bytes if it is genuine)"
            )
        if size > info.file_size:
            raise DataError(
                f"{source}: {key} is truncated: shape {shape} of {dtype} needs {size} bytes, "
                f"the member holds {info.file_size}"
            )
        flat = np.empty(count, dtype=dtype)
        view = memoryview(flat).cast("B") if size else memoryview(b"")
        got = 0
        while got < size:
            n = f.readinto(view[got : got + _READ_CHUNK])
            if not n:
                raise DataError(f"{source}: {key} is truncated ({got} of {size} bytes)")
            got += n
    array = flat.reshape(shape, order="F" if fortran else "C")
    if array.dtype.byteorder not in ("=", "|"):
        array = array.astype(array.dtype.newbyteorder("="))
    return key, array


def read_npz(path: str | os.PathLike, max_bytes: int = MAX_ARRAY_BYTES) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` safely: no unpickling, sizes checked before allocating.

    Each member's ``.npy`` header is read first; object arrays are refused, and a declared size
    above ``max_bytes`` or above the member's stored size is refused before any allocation.
    Decompression streams into the array (for ``np.savez_compressed`` files).

    Returns
    -------
    dict of str to numpy.ndarray
        By member name without ``.npy``.

    Raises
    ------
    DataError
        Naming the file: not a zip, corrupt member, object array, size above the limit.
    """
    source = str(path)
    try:
        with zipfile.ZipFile(path) as zf:
            arrays = {}
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    raise DataError(f"{source}: member {info.filename} is not an .npy array")
                key, array = _read_member(zf, info, source, max_bytes)
                arrays[key] = array
    except zipfile.BadZipFile as exc:
        raise DataError(f"{source}: not a valid .npz file ({exc}); save it with np.savez") from exc
    except (OSError, EOFError, RuntimeError, zipfile.LargeZipFile, NotImplementedError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise DataError(f"{source}: corrupt .npz file ({exc}); save it again") from exc
    return arrays


def _labels(y: np.ndarray, source: str, key: str) -> np.ndarray:
    """Labels as a 1-D array of ints or str (bytes decoded, integral floats made int)."""
    if y.ndim != 1:
        raise DataError(f"{source}: {key} has shape {y.shape}; labels must be 1-D (n,)")
    if y.dtype.kind == "S":
        try:
            return np.char.decode(y, "utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{source}: {key} holds bytes that are not UTF-8 text") from exc
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise DataError(
                f"{source}: {key} holds non-integer or NaN float labels; use ints or strings"
            )
        return y.astype(np.int64)
    if y.dtype.kind not in "biuU":
        raise DataError(f"{source}: {key} of dtype {y.dtype}; labels must be ints or strings")
    return y


def _samples(X: np.ndarray, source: str, key: str, color: str = "grey") -> np.ndarray:
    """Check X: numeric, 2-D features, 3-D grey images or (``color="rgb"``) 4-D RGB images
    (n, h, w, 3), finite."""
    if color == "rgb":
        if X.ndim != 4 or X.shape[3] != 3:
            raise DataError(
                f"{source}: {key} has shape {X.shape}; color rgb needs RGB images (n, h, w, 3), "
                "channels last (leave color at grey for grey images or features)"
            )
    elif X.ndim not in (2, 3):
        rgb = X.ndim == 4 and X.shape[3] == 3
        hint = "; for RGB images pass color='rgb' (--color rgb)" if rgb else ""
        raise DataError(
            f"{source}: {key} has shape {X.shape}; expected images (n, h, w) or features "
            f"(n, d){hint}"
        )
    if X.dtype.kind not in "biuf":
        raise DataError(f"{source}: {key} of dtype {X.dtype}; samples must be numbers")
    if len(X) == 0 or X.size == 0:
        raise DataError(f"{source}: {key} is empty (shape {X.shape})")
    if X.dtype.kind == "f":
        bad = ~np.isfinite(X.reshape(len(X), -1)).all(axis=1)
        if bad.any():
            raise DataError(
                f"{source}: {key} holds NaN or infinite values ({int(bad.sum())} samples, first "
                f"at index {int(np.flatnonzero(bad)[0])}); remove or impute them"
            )
    return X


def _image_max(arrays: dict[str, np.ndarray], source: str) -> int | float | None:
    """``max_value`` of npz images: stored, or implied by uint8/uint16/bool; None for features."""
    X = arrays["X_train"]
    if X.ndim == 2:
        if "max_value" in arrays:
            raise DataError(
                f"{source}: max_value is for images (n, h, w), but X_train holds features "
                f"{X.shape}; remove max_value"
            )
        return None
    if "max_value" in arrays:
        m = arrays["max_value"]
        if m.shape != () or m.dtype.kind not in "iuf" or not np.isfinite(m) or m <= 0:
            raise DataError(f"{source}: max_value must be one positive number, got {m!r}")
        m = m.item()
    elif X.dtype in _NATIVE_MAX:
        m = _NATIVE_MAX[X.dtype]
    else:
        raise DataError(
            f"{source}: X_train holds {X.dtype} images; add max_value=<largest possible pixel "
            "value> to the .npz (e.g. 1.0 for images in [0, 1]), or store uint8/uint16"
        )
    for key in ("X_train", "X_test"):
        if key in arrays:
            lo, hi = arrays[key].min(), arrays[key].max()
            if lo < 0 or hi > m:
                raise DataError(
                    f"{source}: {key} pixel values span [{lo}, {hi}], outside [0, {m}]; "
                    "store max_value (the largest possible pixel value) in the .npz"
                )
    return m


def _encode(
    y_train: np.ndarray, y_test: np.ndarray | None, source: str
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Labels -> indices into the sorted distinct training labels, and their names."""
    if y_test is not None and (y_train.dtype.kind == "U") != (y_test.dtype.kind == "U"):
        raise DataError(f"{source}: y_train and y_test mix strings and numbers")
    values, y_idx = np.unique(y_train, return_inverse=True)
    names = [str(v) for v in values.tolist()]
    if y_test is None:
        return y_idx, None, names
    pos = np.clip(np.searchsorted(values, y_test), 0, len(values) - 1)
    unseen = values[pos] != y_test
    if unseen.any():
        extra = sorted({str(v) for v in y_test[unseen].tolist()})
        raise DataError(
            f"{source}: y_test holds labels that are not in y_train: {extra[:5]}; every test "
            "class needs training samples"
        )
    return y_idx, pos, names


def _from_arrays(
    root: Path,
    arrays: dict[str, np.ndarray],
    checksums: dict[str, str],
    names: dict[str, str],
    color: str = "grey",
) -> OwnArrays:
    """Check X_train, y_train (X_test, y_test, max_value) arrays and encode the labels.

    ``names`` maps the keys to what the user calls them in messages (member or file names);
    ``color`` "rgb" asks for images (n, h, w, 3).
    """
    source = str(root)
    for key in ("X_train", "y_train"):
        if key not in arrays:
            raise DataError(f"{source}: missing {names[key]}; it needs X_train and y_train")
    if ("X_test" in arrays) != ("y_test" in arrays):
        have, lack = ("X_test", "y_test") if "X_test" in arrays else ("y_test", "X_test")
        raise DataError(f"{source}: has {names[have]} but no {names[lack]}; give both or neither")
    X = {
        k: _samples(arrays[k], source, names[k], color)
        for k in ("X_train", "X_test")
        if k in arrays
    }
    y = {k: _labels(arrays[k], source, names[k]) for k in ("y_train", "y_test") if k in arrays}
    for xk, yk in (("X_train", "y_train"), ("X_test", "y_test")):
        if xk in X and len(X[xk]) != len(y[yk]):
            raise DataError(
                f"{source}: {names[xk]} has {len(X[xk])} samples but {names[yk]} has "
                f"{len(y[yk])} labels; they must match"
            )
    if "X_test" in X and X["X_test"].shape[1:] != X["X_train"].shape[1:]:
        raise DataError(
            f"{source}: {names['X_test']} samples have shape {X['X_test'].shape[1:]}, "
            f"{names['X_train']} samples {X['X_train'].shape[1:]}; they must match"
        )
    max_value = _image_max(dict(arrays, **X), source)
    X = {k: x.astype(np.uint8) if x.dtype == np.bool_ else x for k, x in X.items()}
    y_tr, y_te, class_names = _encode(y["y_train"], y.get("y_test"), source)
    return OwnArrays(
        X["X_train"], y_tr, X.get("X_test"), y_te, tuple(class_names), max_value, checksums
    )


def npz_arrays(root: Path, max_bytes: int = MAX_ARRAY_BYTES, color: str = "grey") -> OwnArrays:
    """Load an ``.npz`` holding ``X_train``, ``y_train`` (and ``X_test``, ``y_test``).

    Images ``(n, h, w)`` (``(n, h, w, 3)``, channels last, with ``color="rgb"``) of uint8
    (``max_value`` 255), uint16 (65535) or bool (1), or of another numeric dtype with a scalar
    ``max_value`` member; features ``(n, d)`` of any numeric dtype (``max_value`` None).
    Labels: ints, integral floats, or unicode strings (object arrays are refused: they would
    need unpickling).
    """
    arrays = read_npz(root, max_bytes)
    unknown = sorted(set(arrays) - set(NPZ_KEYS))
    if unknown:
        raise DataError(
            f"{root}: unknown member(s) {', '.join(unknown)}; an .npz dataset holds "
            f"{', '.join(NPZ_KEYS)} (X_test/y_test and max_value optional)"
        )
    digest = hashlib.sha256(root.read_bytes()).hexdigest()
    return _from_arrays(root, arrays, {root.name: digest}, {k: k for k in NPZ_KEYS}, color)


# ---------------------------------------------------------------------------- IDX folders
def idx_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem.gz`` or ``folder/stem``, whichever exists first; None if neither."""
    return next((p for p in (folder / f"{stem}.gz", folder / stem) if p.is_file()), None)


def idx_arrays(root: Path, max_bytes: int = MAX_ARRAY_BYTES, color: str = "grey") -> OwnArrays:
    """Load your own IDX files named as MNIST's, without checksums.

    ``train-images-idx3-ubyte[.gz]`` and ``train-labels-idx1-ubyte[.gz]`` are required,
    ``t10k-images-idx3-ubyte[.gz]`` and ``t10k-labels-idx1-ubyte[.gz]`` optional (both or
    neither). Images must be uint8 (``max_value`` 255), or ``(n, d)`` features of any IDX dtype;
    labels any IDX integer type.
    """
    arrays, checksums, names = {}, {}, {}
    keys = (("X_train", "y_train"), ("X_test", "y_test"))
    for (img, lbl), (xk, yk) in zip(IDX_NAMES, keys, strict=True):
        for stem, key in ((img, xk), (lbl, yk)):
            file = idx_file(root, stem)
            names[key] = file.name if file is not None else f"{stem}[.gz]"
            if file is not None:
                arrays[key] = read_idx(file, max_bytes)
                checksums[stem] = hashlib.sha256(file.read_bytes()).hexdigest()
    return _from_arrays(root, arrays, checksums, names, color)
