"""Your own data: a folder of images (one subfolder per class), an ``.npz``, or an IDX pair.

:func:`load_path` turns any of these into a :class:`~ebprop.datasets.Dataset` with the same
splits and checks as the bundled datasets:

- **a folder of images**: class subfolders named by class, under ``PATH/train/`` (optional
  ``PATH/test/``) or directly under ``PATH``;
- **an .npz** with ``X_train``, ``y_train`` and optionally ``X_test``, ``y_test`` and
  ``max_value``: images ``(n, h, w)``, RGB images ``(n, h, w, 3)`` (with ``color="rgb"``) or
  features ``(n, d)``, labels of any type (ints, unicode
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ebprop.datasets.base import MAX_ARRAY_BYTES, Dataset, resolve_validation, split_stratified
from ebprop.datasets.images import (
    COLORS,
    IMAGE_SUFFIXES,
    MAX_IMAGE_PIXELS,
    read_image,
    rescale,
    resize_image,
)
from ebprop.datasets.own_arrays import (
    IDX_NAMES,
    NPZ_KEYS,
    OwnArrays,
    idx_arrays,
    idx_file,
    npz_arrays,
    read_npz,
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
    background: tuple[int, int, int] = (255, 255, 255),
    color: str = "grey",
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
    background : (r, g, b)
        Colour transparent pixels of image files are composited on (default white).
    max_bytes : int
        Largest array accepted: an .npz member or IDX payload as declared in its header (checked
        before allocating), or the stacked images of a folder.
    color : {"grey", "rgb"}
        ``grey``: image files are read as luma, arrays must be (n, h, w) or features (n, d).
        ``rgb``: image files keep their red, green and blue channels and arrays must be
        (n, h, w, 3); the images are then (n, h, w, 3), channels last.

    Returns
    -------
    Dataset
        ``name`` is the absolute path; ``class_names`` the folder names or the labels; images
        (n, h, w), or (n, h, w, 3) with ``color="rgb"``.

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
    check_load_options(validation, test_fraction, image_size, resize, color)
    split = _Split(validation, seed, test_fraction, test_seed)
    if root.is_file():
        if root.suffix.lower() != ".npz":
            raise DataError(
                f"{root}: not a dataset; give an .npz file, or a folder of images with one "
                "subfolder per class"
            )
        return _build(root, npz_arrays(root, max_bytes, color), split)
    if idx_file(root, IDX_NAMES[0][0]) is not None:
        return _build(root, idx_arrays(root, max_bytes, color), split)
    return _load_image_folder(
        root, split, image_size, resize, max_pixels, max_bytes, background, color
    )


def check_load_options(
    validation: int | float | None,
    test_fraction: float,
    image_size: tuple[int, int] | None,
    resize: str,
    color: str = "grey",
) -> None:
    """Refuse bad loader arguments before any file is read (callers may check them up front).

    Raises
    ------
    ValueError
        Naming the argument: ``validation`` (its form; its size is checked against the data),
        ``test_fraction``, ``image_size``, ``resize``, ``color``.
    """
    if color not in COLORS:
        raise ValueError(f"color must be one of {', '.join(COLORS)}, got {color!r}")
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


def _build(root: Path, data: OwnArrays, split: _Split) -> Dataset:
    """Check the classes, hold out the test and validation splits, and make the Dataset.

    ``data.y_train``/``data.y_test`` are already indices into ``data.class_names``.
    """
    X_train, y_train, X_test, y_test, class_names, max_value, checksums = data
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
    background: tuple[int, int, int] = (255, 255, 255),
    color: str = "grey",
) -> Dataset:
    """Load a folder of images with one subfolder per class (see :func:`load_path`).

    Images are read by :func:`~ebprop.datasets.images.read_image` (grey, or RGB with ``color``
    "rgb"; full bit depth, transparency composited on ``background``).
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
    channels = 3 if color == "rgb" else 1
    first: Path | None = None
    decoded, labels, checksums = {}, {}, {}
    for part, classes in splits.items():
        pairs, ys, digest = [], [], hashlib.sha256()
        for cls, files in classes.items():
            for file in files:
                image, depth = read_image(
                    file, max_pixels=max_pixels, background=background, color=color
                )
                digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes())
                if size is None:
                    size, first = image.shape[:2], file
                if n_files * math.prod(size) * channels * 2 > max_bytes:  # 2: 16-bit worst case
                    raise DataError(
                        f"{root}: {n_files} images of {size[0]}x{size[1]} exceed the limit of "
                        f"{max_bytes} bytes; use a smaller image_size or raise max_bytes"
                    )
                if image.shape[:2] != size:
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
    data = OwnArrays(
        X["train"], labels["train"], X.get("test"), labels.get("test"), tuple(names), max_value,
        checksums,
    )  # fmt: skip
    return _build(root, data, split)
