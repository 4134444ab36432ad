"""Your own data: a folder of images (one subfolder per class), an ``.npz``, or an IDX pair.

:func:`load_path` turns any of these into a :class:`~ebprop.datasets.Dataset` with the same
splits and checks as the bundled datasets:

- **a folder of images**: class subfolders named by class, under ``PATH/train/`` (optional
  ``PATH/test/``) or directly under ``PATH``;
- **an .npz** with ``X_train``, ``y_train`` and optionally ``X_test``, ``y_test`` and
  ``max_value``: images ``(n, h, w)`` or features ``(n, d)``, labels of any type (ints, unicode
  strings), read without unpickling;
- **a folder holding IDX files** with MNIST's names (``train-images-idx3-ubyte[.gz]``,
  ``train-labels-idx1-ubyte[.gz]``, optional ``t10k-…``), read without checksums.

Without a test set, a stratified ``test_fraction`` of the training data (at least one sample
per class) is held out with the fixed ``test_seed``, so every run reports on the same test set;
the validation split is then a stratified part of the rest drawn with ``seed``. Labels become
indices ``0..k-1`` into ``Dataset.class_names`` (sorted folder names, or the sorted distinct
labels).
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebprop.datasets.base import MAX_ARRAY_BYTES, Dataset, resolve_validation, split_stratified
from ebprop.datasets.idx import read_idx
from ebprop.datasets.images import (
    IMAGE_SUFFIXES,
    MAX_IMAGE_PIXELS,
    read_image,
    rescale,
    resize_image,
)
from ebprop.exceptions import DataError, DataNotFoundError

__all__ = [
    "DEFAULT_TEST_FRACTION",
    "DEFAULT_VALIDATION",
    "IDX_NAMES",
    "NPZ_KEYS",
    "RESIZE_MODES",
    "check_load_options",
    "load_path",
    "read_npz",
]

#: Fraction of the data held out as the test set when the data has none.
DEFAULT_TEST_FRACTION = 0.2
#: Default validation split of your own data: a stratified fraction of the training set.
DEFAULT_VALIDATION = 0.2
#: What to do with images whose size differs from the stated (or first) one.
RESIZE_MODES = ("refuse", "resize")
#: Members an .npz may hold.
NPZ_KEYS = ("X_train", "y_train", "X_test", "y_test", "max_value")
#: The IDX files of a folder in MNIST's layout: (images, labels) of train, then of test.
IDX_NAMES = (
    ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
)
_NATIVE_MAX = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535, np.dtype(np.bool_): 1}
_READ_CHUNK = 1 << 24  # bytes per read of an .npz member


# ---------------------------------------------------------------------------- entry point
def load_path(
    path: str | os.PathLike,
    *,
    validation: int | float | None = None,
    seed: int = 0,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    test_seed: int = 0,
    image_size: tuple[int, int] | None = None,
    resize: str = "refuse",
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_bytes: int = MAX_ARRAY_BYTES,
) -> Dataset:
    """Load your own data from a folder of images, an ``.npz`` file or a folder of IDX files.

    Parameters
    ----------
    path : str or PathLike
        A ``.npz`` file; a folder holding ``train-images-idx3-ubyte[.gz]`` (IDX layout); or a
        folder of class subfolders, under ``path/train/`` (and ``path/test/``) or directly.
    validation : int, float or None
        Count (int) or fraction (float) of the training set held out for validation, stratified,
        drawn with ``seed``; default 0.2; 0 for none.
    seed : int
        Seed of the validation split.
    test_fraction : float
        Fraction in (0, 1) held out as the test set when the data has none (stratified, drawn
        with ``test_seed``); ignored when the data has a test set.
    test_seed : int
        Seed of that test split; fixed by default so every run sees the same test set.
    image_size : (int, int) or None
        ``(h, w)`` every image must have (``resize="refuse"``) or is resized to
        (``resize="resize"``). None: all images must share the size of the first one.
    resize : {"refuse", "resize"}
        What to do with an image of another size: refuse with an error naming it, or resize it
        to ``image_size`` (Lanczos, aspect ratio not kept; needs ``image_size``).
    max_pixels : int
        Largest ``width * height`` of one image file, checked before decoding.
    max_bytes : int
        Largest array accepted: an .npz member or IDX payload as declared in its header (checked
        before allocating), or the stacked images of a folder.

    Returns
    -------
    Dataset
        ``name`` is the absolute path; ``class_names`` the folder names or the labels.

    Raises
    ------
    DataNotFoundError
        If ``path`` does not exist.
    DataError
        One line naming the file and the fix, for every kind of bad data.
    ValueError
        On bad arguments (``validation``, ``test_fraction``, ``image_size``, ``resize``).
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise DataNotFoundError(
            f"{path}: no such file or folder; give a folder of images (one subfolder per class) "
            "or an .npz file"
        )
    check_load_options(validation, test_fraction, image_size, resize)
    split = _Split(validation, seed, test_fraction, test_seed)
    if root.is_file():
        if root.suffix.lower() != ".npz":
            raise DataError(
                f"{root}: not a dataset; give an .npz file, or a folder of images with one "
                "subfolder per class"
            )
        return _load_npz(root, split, max_bytes)
    if _idx_file(root, IDX_NAMES[0][0]) is not None:
        return _load_idx_folder(root, split, max_bytes)
    return _load_image_folder(root, split, image_size, resize, max_pixels, max_bytes)


def check_load_options(
    validation: int | float | None,
    test_fraction: float,
    image_size: tuple[int, int] | None,
    resize: str,
) -> None:
    """Refuse bad loader arguments before any file is read (callers may check them up front).

    Raises
    ------
    ValueError
        Naming the argument: ``validation`` (its form; its size is checked against the data),
        ``test_fraction``, ``image_size``, ``resize``.
    """
    resolve_validation(validation, sys.maxsize, DEFAULT_VALIDATION)  # its form only
    if (
        isinstance(test_fraction, bool)
        or not isinstance(test_fraction, numbers.Real)
        or not (0.0 < test_fraction < 1.0)
    ):
        raise ValueError(f"test_fraction must be a fraction in (0, 1), got {test_fraction!r}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    if image_size is not None:
        ok = (
            isinstance(image_size, Sequence)
            and len(image_size) == 2
            and all(isinstance(s, numbers.Integral) and s >= 1 for s in image_size)
        )
        if not ok:
            raise ValueError(f"image_size must be (height, width) in pixels, got {image_size!r}")
    elif resize == "resize":
        raise ValueError("resize='resize' needs image_size=(height, width), the size to resize to")


# ---------------------------------------------------------------------------- common build
@dataclass(frozen=True)
class _Split:
    """How the test and validation splits are drawn (see :func:`load_path`)."""

    validation: int | float | None
    seed: int
    test_fraction: float
    test_seed: int


def _build(
    root: Path,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray | None,
    y_test: np.ndarray | None,
    class_names: Sequence[str],
    max_value: int | float | None,
    checksums: dict[str, str],
    split: _Split,
) -> Dataset:
    """Check the classes, hold out the test and validation splits, and make the Dataset.

    ``y_train``/``y_test`` are already indices into ``class_names``.
    """
    present = np.unique(y_train)
    if len(present) < 2:
        only = class_names[int(present[0])] if len(present) else "none"
        raise DataError(
            f"{root}: the training data hold one class only ({only!r}); a classifier needs at "
            "least two classes"
        )
    source = str(root)
    if X_test is None:
        # at least one sample per class, which a stratified split needs
        n_test = max(len(present), int(round(split.test_fraction * len(y_train))))
        X_train, X_test, y_train, y_test = split_stratified(
            X_train, y_train, n_test, split.test_seed, source, "test"
        )
    n_val = resolve_validation(split.validation, len(y_train), DEFAULT_VALIDATION)
    X_train, X_val, y_train, y_val = split_stratified(
        X_train, y_train, n_val, split.seed, source, "validation"
    )
    return Dataset(
        name=str(root.resolve()),
        X_train=X_train,
        y_train=y_train.astype(np.int64),
        X_val=X_val,
        y_val=y_val.astype(np.int64),
        X_test=X_test,
        y_test=y_test.astype(np.int64),
        max_value=max_value,
        classes=np.arange(len(class_names), dtype=np.int64),
        checksums=checksums,
        class_names=tuple(class_names),
    )


# ---------------------------------------------------------------------------- image folders
def _image_files(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively, sorted; hidden files and folders skipped."""
    found = []
    for top, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # prune hidden folders
        found += [
            Path(top, n)
            for n in names
            if not n.startswith(".") and os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES
        ]
    return sorted(p for p in found if p.is_file())


def _refuse_loose_images(folder: Path) -> None:
    """Images beside the class folders belong to no class: refuse them rather than skip them."""
    loose = sorted(
        p.name
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
    )
    if loose:
        raise DataError(
            f"{folder}: images lie directly in the folder ({loose[0]}, {len(loose)} in all); "
            f"put each class in its own subfolder ({folder}/<class name>/{loose[0]})"
        )


def _class_folders(folder: Path) -> dict[str, list[Path]]:
    """Class name -> its image files (sorted, searched recursively), for one split folder."""
    _refuse_loose_images(folder)
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(
            f"{folder}: no images found; expected one subfolder per class holding image files "
            f"({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    files = {}
    for cls in classes:
        found = _image_files(cls)
        if not found:
            raise DataError(
                f"{cls}: empty class folder (no image files); add images or remove the folder"
            )
        files[cls.name] = found
    return files


def _split_folders(root: Path) -> tuple[Path, Path | None]:
    """The train and (optional) test folders of ``root``."""
    train = root / "train"
    if not train.is_dir():
        return root, None
    _refuse_loose_images(root)
    others = sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and p.name not in ("train", "test") and not p.name.startswith(".")
    )
    if others:
        raise DataError(
            f"{root}: holds train/ and also {', '.join(others)}/; the split layout has only "
            "train/ and an optional test/ (the validation split is drawn from train/)"
        )
    test = root / "test"
    return train, test if test.is_dir() else None


def _load_image_folder(
    root: Path,
    split: _Split,
    image_size: tuple[int, int] | None,
    resize: str,
    max_pixels: int,
    max_bytes: int,
) -> Dataset:
    """Load a folder of images with one subfolder per class (see :func:`load_path`).

    Images are read by :func:`~ebprop.datasets.images.read_image` (greyscale, full bit depth).
    When any image is 16-bit, all are stored as uint16 with ``max_value`` 65535 (8-bit images
    scaled by 257); otherwise uint8 with ``max_value`` 255.
    """
    train_dir, test_dir = _split_folders(root)
    train = _class_folders(train_dir)
    names = list(train)
    test = _class_folders(test_dir) if test_dir is not None else None
    if test is not None:
        unknown = sorted(set(test) - set(train))
        if unknown:
            raise DataError(
                f"{test_dir / unknown[0]}: test class not in {train_dir}; every test class "
                "needs training images"
            )
    splits = {"train": train} | ({"test": test} if test is not None else {})
    n_files = sum(len(f) for s in splits.values() for f in s.values())

    size = tuple(image_size) if image_size is not None else None
    first: Path | None = None
    decoded, labels, checksums = {}, {}, {}
    for part, classes in splits.items():
        pairs, ys, digest = [], [], hashlib.sha256()
        for cls, files in classes.items():
            for file in files:
                image, depth = read_image(file, max_pixels=max_pixels)
                digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes())
                if size is None:
                    size, first = image.shape, file
                if n_files * math.prod(size) * 2 > max_bytes:  # 2: 16-bit worst case
                    raise DataError(
                        f"{root}: {n_files} images of {size[0]}x{size[1]} exceed the limit of "
                        f"{max_bytes} bytes; use a smaller image_size or raise max_bytes"
                    )
                if image.shape != size:
                    if resize != "resize":
                        stated = f"{first} is" if first is not None else "image_size is"
                        raise DataError(
                            f"{file}: {image.shape[0]}x{image.shape[1]} pixels, but {stated} "
                            f"{size[0]}x{size[1]}; resize all images to one size with "
                            "image_size=(h, w) and resize='resize' (--image-size HxW --resize)"
                        )
                    image = resize_image(image, size, depth)
                pairs.append((image, depth))
                ys.append(names.index(cls))
        decoded[part], labels[part] = pairs, np.asarray(ys, dtype=np.int64)
        checksums[part] = digest.hexdigest()
    # one bit depth for all: 16-bit as soon as one image is (8-bit levels scaled by 257)
    max_value = max(depth for pairs in decoded.values() for _, depth in pairs)
    X = {
        part: np.stack([rescale(image, depth, max_value) for image, depth in pairs])
        for part, pairs in decoded.items()
    }
    return _build(
        root, X["train"], labels["train"], X.get("test"), labels.get("test"), names, max_value,
        checksums, split,
    )  # fmt: skip


# ---------------------------------------------------------------------------- .npz files
def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, source: str, max_bytes: int):
    """One .npy member of an .npz, its header checked before any allocation; never unpickles."""
    key = info.filename[: -len(".npy")]
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
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


def _samples(X: np.ndarray, source: str, key: str) -> np.ndarray:
    """Check X: numeric, 2-D features or 3-D images, finite."""
    if X.ndim not in (2, 3):
        hint = "; convert colour images to greyscale" if X.ndim == 4 else ""
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
    split: _Split,
) -> Dataset:
    """Check and build a Dataset from X_train, y_train (X_test, y_test, max_value) arrays.

    ``names`` maps the keys to what the user calls them in messages (member or file names).
    """
    source = str(root)
    for key in ("X_train", "y_train"):
        if key not in arrays:
            raise DataError(f"{source}: missing {names[key]}; it needs X_train and y_train")
    if ("X_test" in arrays) != ("y_test" in arrays):
        have, lack = ("X_test", "y_test") if "X_test" in arrays else ("y_test", "X_test")
        raise DataError(f"{source}: has {names[have]} but no {names[lack]}; give both or neither")
    X = {k: _samples(arrays[k], source, names[k]) for k in ("X_train", "X_test") if k in arrays}
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
    return _build(
        root, X["X_train"], y_tr, X.get("X_test"), y_te, class_names, max_value, checksums, split
    )


def _load_npz(root: Path, split: _Split, max_bytes: int) -> Dataset:
    """Load an ``.npz`` holding ``X_train``, ``y_train`` (and ``X_test``, ``y_test``).

    Images ``(n, h, w)`` of uint8 (``max_value`` 255), uint16 (65535) or bool (1), or of another
    numeric dtype with a scalar ``max_value`` member; features ``(n, d)`` of any numeric dtype
    (``max_value`` None). Labels: ints, integral floats, or unicode strings (object arrays are
    refused: they would need unpickling).
    """
    arrays = read_npz(root, max_bytes)
    unknown = sorted(set(arrays) - set(NPZ_KEYS))
    if unknown:
        raise DataError(
            f"{root}: unknown member(s) {', '.join(unknown)}; an .npz dataset holds "
            f"{', '.join(NPZ_KEYS)} (X_test/y_test and max_value optional)"
        )
    digest = hashlib.sha256(root.read_bytes()).hexdigest()
    return _from_arrays(root, arrays, {root.name: digest}, {k: k for k in NPZ_KEYS}, split)


# ---------------------------------------------------------------------------- IDX folders
def _idx_file(folder: Path, stem: str) -> Path | None:
    return next((p for p in (folder / f"{stem}.gz", folder / stem) if p.is_file()), None)


def _load_idx_folder(root: Path, split: _Split, max_bytes: int) -> Dataset:
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
            file = _idx_file(root, stem)
            names[key] = file.name if file is not None else f"{stem}[.gz]"
            if file is not None:
                arrays[key] = read_idx(file, max_bytes)
                checksums[stem] = hashlib.sha256(file.read_bytes()).hexdigest()
    return _from_arrays(root, arrays, checksums, names, split)
