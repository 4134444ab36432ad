"""Datasets and preprocessing.

>>> from ebprop.datasets import load_dataset, Preprocessor
>>> ds = load_dataset("digits")
>>> pre = Preprocessor(scaling="unit", filters="default").fit(ds.X_train, ds.max_value)
>>> X = pre.transform(ds.X_train)  # (n, 64 + 2 * 64)
"""

from __future__ import annotations

import os

from ebprop.datasets.base import DATA_ENV, Dataset, default_cache_dir
from ebprop.datasets.digits import load_digits
from ebprop.datasets.filters import DEFAULT_FILTERS, FILTER_BANKS, parse_filters
from ebprop.datasets.idx import read_idx, write_idx
from ebprop.datasets.mnist import load_mnist_family
from ebprop.datasets.transforms import SCALINGS, Preprocessor, deskew

__all__ = [
    "DATASETS",
    "DATA_ENV",
    "DEFAULT_FILTERS",
    "FILTER_BANKS",
    "SCALINGS",
    "Dataset",
    "Preprocessor",
    "default_cache_dir",
    "deskew",
    "load_dataset",
    "parse_filters",
    "read_idx",
    "write_idx",
]

#: Dataset names accepted by :func:`load_dataset`, with a one-line description.
DATASETS: dict[str, str] = {
    "digits": "scikit-learn's bundled 8x8 digits (1,797 images, no download)",
    "mnist": "MNIST handwritten digits, 28x28, 60,000 train / 10,000 test",
    "fashion-mnist": "Zalando's Fashion-MNIST, 28x28, 60,000 train / 10,000 test",
}


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    validation: int | float | None = None,
    seed: int = 0,
    download: bool = True,
) -> Dataset:
    """Load a dataset by name with train, validation and official test splits.

    Parameters
    ----------
    name : {"digits", "mnist", "fashion-mnist"}
        The dataset.
    data_dir : str, PathLike or None
        For the MNIST family: the folder holding the four IDX files, or a parent holding one
        folder per dataset (``mnist/``, ``fashion-mnist/``). None searches ``$EBPROP_DATA``,
        then the user cache (:func:`default_cache_dir`). Ignored for digits.
    validation : int, float or None
        Size (int) or fraction (float) of the training set held out for validation; 0 for none.
        Default: the last 10,000 training images (MNIST family), a stratified 0.2 (digits).
    seed : int
        Seed of the digits validation split (the MNIST-family split is the fixed tail).
    download : bool
        Fetch missing MNIST-family files from the public mirrors into the cache.

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        On an unknown name or a bad ``validation``.
    DataNotFoundError, ChecksumError, DataError
        See :func:`ebprop.datasets.mnist.load_mnist_family`.
    """
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    if key == "digits":
        return load_digits(validation=validation, seed=seed)
    return load_mnist_family(key, data_dir, validation=validation, download=download)
