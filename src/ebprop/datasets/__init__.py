"""Datasets and preprocessing.

>>> from ebprop.datasets import load_dataset, Preprocessor
>>> ds = load_dataset("digits")
>>> pre = Preprocessor(scaling="unit", filters="default").fit(ds.X_train, ds.max_value)
>>> X = pre.transform(ds.X_train)  # (n, 64 + 2 * 64)
"""

from __future__ import annotations

import os
from pathlib import Path

from ebprop.datasets.appearance import parse_background
from ebprop.datasets.base import (
    DATA_ENV,
    MAX_ARRAY_BYTES,
    Dataset,
    align_labels,
    default_cache_dir,
)
from ebprop.datasets.digits import load_digits
from ebprop.datasets.filters import DEFAULT_FILTERS, FILTER_BANKS, parse_filters
from ebprop.datasets.idx import read_idx, write_idx
from ebprop.datasets.images import (
    COLORS,
    MAX_IMAGE_PIXELS,
    parse_image_size,
    prepare_image,
    read_image,
)
from ebprop.datasets.mnist import load_mnist_family
from ebprop.datasets.own import (
    DEFAULT_TEST_FRACTION,
    RESIZE_MODES,
    check_load_options,
    load_path,
)
from ebprop.datasets.transforms import SCALINGS, Preprocessor, check_input_gain, deskew
from ebprop.exceptions import DataNotFoundError

__all__ = [
    "COLORS",
    "DATASETS",
    "DATA_ENV",
    "DEFAULT_FILTERS",
    "DEFAULT_TEST_FRACTION",
    "FILTER_BANKS",
    "MAX_ARRAY_BYTES",
    "MAX_IMAGE_PIXELS",
    "RESIZE_MODES",
    "SCALINGS",
    "Dataset",
    "Preprocessor",
    "align_labels",
    "check_color",
    "check_input_gain",
    "check_load_options",
    "default_cache_dir",
    "deskew",
    "is_dataset_path",
    "load_dataset",
    "load_path",
    "parse_filters",
    "parse_image_size",
    "prepare_image",
    "read_idx",
    "read_image",
    "write_idx",
]

#: Dataset names accepted by :func:`load_dataset`, with a one-line description.
DATASETS: dict[str, str] = {
    "digits": "scikit-learn's bundled 8x8 digits (1,797 images, no download)",
    "mnist": "MNIST handwritten digits, 28x28, 60,000 train / 10,000 test",
    "fashion-mnist": "Zalando's Fashion-MNIST, 28x28, 60,000 train / 10,000 test",
}


def is_dataset_path(name: str | os.PathLike) -> bool:
    """Whether :func:`load_dataset` reads ``name`` as a path rather than a dataset name.

    A bundled name (``digits``, ``mnist``, ``fashion-mnist``, any case, ``_`` for ``-``) is a
    name even if a folder of that name exists (write ``./mnist`` for the folder); anything else
    that exists, contains a path separator or ends in ``.npz`` is a path.
    """
    if isinstance(name, os.PathLike):
        return True
    if name.strip().lower().replace("_", "-") in DATASETS:
        return False
    return (
        Path(name).expanduser().exists()
        or "/" in name
        or os.sep in name
        or (name.lower().endswith(".npz"))
    )


def load_dataset(
    name: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    *,
    validation: int | float | None = None,
    seed: int = 0,
    download: bool = True,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    test_seed: int = 0,
    image_size: tuple[int, int] | None = None,
    resize: str = "refuse",
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_bytes: int = MAX_ARRAY_BYTES,
    background: str | tuple[int, int, int] = "white",
    color: str = "grey",
) -> Dataset:
    """Load a dataset by name, or your own data by path, with train, validation and test splits.

    Parameters
    ----------
    name : str or PathLike
        ``"digits"``, ``"mnist"``, ``"fashion-mnist"``, or a path (see :func:`is_dataset_path`):
        a folder of images with one subfolder per class (under ``PATH/train/`` with an optional
        ``PATH/test/``, or directly under ``PATH``), an ``.npz`` with ``X_train``, ``y_train``
        (optionally ``X_test``, ``y_test``, ``max_value``), or a folder of IDX files named as
        MNIST's. See :func:`ebprop.datasets.own.load_path`.
    data_dir : str, PathLike or None
        For the MNIST family: the folder holding the four IDX files, or a parent holding one
        folder per dataset (``mnist/``, ``fashion-mnist/``). None searches ``$EBPROP_DATA``,
        then the user cache (:func:`default_cache_dir`). Ignored for digits and paths.
    validation : int, float or None
        Size (int) or fraction (float) of the training set held out for validation; 0 for none.
        Default: the last 10,000 training images (MNIST family), a stratified 0.2 (digits and
        your own data).
    seed : int
        Seed of the stratified validation split (digits, your own data); the MNIST-family split
        is the fixed tail.
    download : bool
        Fetch missing MNIST-family files from the public mirrors into the cache.
    test_fraction, test_seed, image_size, resize, max_pixels, max_bytes, background, color
        For paths only: see :func:`ebprop.datasets.own.load_path`. ``color="rgb"`` keeps
        the three channels of your own images ((n, h, w, 3)); the bundled datasets are grey
        and refuse it. ``test_fraction`` (default
        0.2) is held out with ``test_seed`` (default 0) when the data has no test set.

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        On an unknown name or a bad ``validation``.
    DataNotFoundError, ChecksumError, DataError
        See :func:`ebprop.datasets.mnist.load_mnist_family` and
        :func:`ebprop.datasets.own.load_path`.
    """
    if is_dataset_path(name):
        if not Path(name).expanduser().exists():
            raise DataNotFoundError(
                f"{name}: no such file or folder; give a folder of images (one subfolder per "
                f"class), an .npz file, or one of {', '.join(DATASETS)}"
            )
        return load_path(
            name, validation=validation, seed=seed, test_fraction=test_fraction,
            test_seed=test_seed, image_size=image_size, resize=resize, max_pixels=max_pixels,
            max_bytes=max_bytes, background=parse_background(background), color=color,
        )  # fmt: skip
    key = str(name).strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise ValueError(
            f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}, or give the path of "
            "a folder of images or an .npz file"
        )
    check_color(key, color)
    if key == "digits":
        return load_digits(validation=validation, seed=seed)
    return load_mnist_family(key, data_dir, validation=validation, download=download)


def check_color(name: str, color: str) -> None:
    """ValueError (one line) unless ``color`` is one of :data:`COLORS` and fits dataset ``name``:
    the bundled datasets (digits, MNIST, Fashion-MNIST) are grey, so ``rgb`` is for your own
    data only."""
    if color not in COLORS:
        raise ValueError(f"color must be one of {', '.join(COLORS)}, got {color!r}")
    key = str(name).strip().lower().replace("_", "-")
    if color != "grey" and key in DATASETS:
        raise ValueError(
            f"color {color!r}: {key} is a grey dataset; leave color at grey (--color grey), "
            "rgb is for your own colour images"
        )
