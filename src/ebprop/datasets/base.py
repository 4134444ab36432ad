"""The :class:`Dataset` container, data-directory resolution and validation splits."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ebprop.exceptions import DataError

__all__ = [
    "DATA_ENV",
    "align_labels",
    "MAX_ARRAY_BYTES",
    "Dataset",
    "default_cache_dir",
    "resolve_validation",
    "split_stratified",
]

#: Environment variable naming the data directory.
DATA_ENV = "EBPROP_DATA"
#: Default limit on the size of one array declared inside a data file (IDX, .npz member),
#: checked before allocating: 2 GiB is 40x MNIST's training images.
MAX_ARRAY_BYTES = 2 << 30


@dataclass(frozen=True)
class Dataset:
    """An image classification dataset with train, validation and test splits.

    Images are kept raw (as stored on disk); scaling and features are the job of
    :class:`~ebprop.datasets.Preprocessor`.

    Attributes
    ----------
    name : str
        ``"digits"``, ``"mnist"``, ``"fashion-mnist"``, or the absolute path of your own data.
    X_train, X_val, X_test : numpy.ndarray
        Raw images of shape ``(n, h, w)`` (``(n, h, w, 3)`` for RGB, channels last) with values
        in ``0..max_value`` (uint8; uint16 for 16-bit images; any numeric dtype from an
        ``.npz``), or features of shape ``(n, d)`` (an
        ``.npz`` of features; then ``max_value`` is None). ``X_val`` is held out from the training
        set; ``X_test`` is the official test set. With no validation split ``X_val`` has shape
        ``(0, h, w)`` (or ``(0, d)``).
    y_train, y_val, y_test : numpy.ndarray
        int64 labels of shape ``(n,)``: indices into ``class_names``.
    max_value : int, float or None
        Largest possible pixel value (255 for the MNIST family and 8-bit images, 65535 for
        16-bit images, 16 for digits); None for features.
    classes : numpy.ndarray
        The label values, sorted: ``0 .. len(class_names) - 1``.
    checksums : dict of str to str
        SHA-256 of the uncompressed content of each file read, by canonical file name (empty for
        the bundled digits; for a folder of images one digest per split over its files).
    class_names : tuple of str
        The name of each class, by label: ``class_names[y]`` is the class of a sample. Digits for
        MNIST and digits, Zalando's names for Fashion-MNIST, folder names or the stored labels
        for your own data.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    max_value: int | float | None
    classes: np.ndarray
    checksums: dict[str, str] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.class_names:  # by default the labels themselves
            object.__setattr__(self, "class_names", tuple(str(c) for c in self.classes))
        if len(self.class_names) != len(self.classes):
            raise ValueError(f"{len(self.class_names)} class names for {len(self.classes)} classes")

    @property
    def is_images(self) -> bool:
        """True for images ``(n, h, w)`` or ``(n, h, w, 3)``, False for features ``(n, d)``."""
        return self.X_train.ndim in (3, 4)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """``(h, w)``, the shape of one image (``(h, w, 3)`` for RGB, ``(d,)`` for features)."""
        return tuple(int(s) for s in self.X_train.shape[1:])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(X, y)`` of ``"train"``, ``"val"``, ``"test"``, or ``"all"`` (the three, in order).

        ``"all"`` is for evaluating a model on data it was not trained on (another folder).
        """
        parts = {
            "train": (self.X_train, self.y_train),
            "val": (self.X_val, self.y_val),
            "test": (self.X_test, self.y_test),
        }
        if name == "all":
            return (
                np.concatenate([x for x, _ in parts.values()]),
                np.concatenate([y for _, y in parts.values()]),
            )
        if name not in parts:
            raise ValueError(f"unknown split {name!r}; choose from train, val, test, all")
        return parts[name]

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.image_shape))
        kind = shape if self.is_images else f"{shape} features"
        return (
            f"Dataset({self.name!r}, {kind}, train={len(self.y_train)}, val={len(self.y_val)}, "
            f"test={len(self.y_test)}, classes={len(self.classes)}, max_value={self.max_value})"
        )


def default_cache_dir() -> Path:
    """The per-user cache folder for downloaded datasets.

    ``$XDG_CACHE_HOME/ebprop`` (default ``~/.cache/ebprop``) on Linux and other Unix systems,
    ``~/Library/Caches/ebprop`` on macOS and ``%LOCALAPPDATA%\\ebprop\\Cache`` on Windows.
    """
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "ebprop" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "ebprop"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ebprop"


def resolve_validation(validation: int | float | None, n_train: int, default: int | float) -> int:
    """Turn a ``validation`` argument into a number of held-out training images.

    Parameters
    ----------
    validation : int, float or None
        ``None`` for ``default``; an int for a count; a float in ``[0, 1)`` for a fraction of the
        training set; ``0`` for no validation split.
    n_train : int
        Size of the training set before the split.
    default : int or float
        Value used when ``validation`` is None.

    Returns
    -------
    int
        The number of validation images, in ``[0, n_train - 1]``.

    Raises
    ------
    ValueError
        If ``validation`` is negative, not a number, or leaves no training images.
    """
    if validation is None:
        validation = default
    if isinstance(validation, bool) or not isinstance(validation, (int, float, np.number)):
        raise ValueError(f"validation must be an int, a float or None, got {validation!r}")
    if isinstance(validation, (float, np.floating)):
        if not 0.0 <= validation < 1.0:
            raise ValueError(
                f"validation={validation!r}: a fraction must lie in [0, 1); pass an int for a count"
            )
        n_val = int(round(validation * n_train))
    else:
        n_val = int(validation)
    if not 0 <= n_val < n_train:
        raise ValueError(
            f"validation={validation!r} asks for {n_val} of {n_train} training images; "
            f"use 0 <= validation < {n_train}"
        )
    return n_val


def split_stratified(
    X: np.ndarray, y: np.ndarray, n_out: int, seed: int, source: str, what: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hold out ``n_out`` samples, stratified by class, drawn with ``seed``.

    Parameters
    ----------
    X : numpy.ndarray
        Samples, shape (n, ...).
    y : numpy.ndarray
        Labels, shape (n,).
    n_out : int
        Number held out (0 gives an empty second part).
    seed : int
        Seed of the draw.
    source, what : str
        The data and the name of the split, for the error message.

    Returns
    -------
    X_keep, X_out, y_keep, y_out : numpy.ndarray

    Raises
    ------
    DataError
        When a stratified split of that size is impossible (a class with one sample, or fewer
        held-out samples than classes).
    """
    if n_out == 0:
        return X, X[:0], y, y[:0]
    from sklearn.model_selection import train_test_split  # slow import, only needed here

    try:
        X_keep, X_out, y_keep, y_out = train_test_split(
            X, y, test_size=n_out, stratify=y, random_state=seed
        )
    except ValueError as exc:
        raise DataError(
            f"{source}: cannot hold out a stratified {what} split of {n_out} of {len(y)} samples "
            f"({exc}); add samples, or change the {what} size"
        ) from exc
    return X_keep, X_out, y_keep, y_out


def align_labels(
    y: np.ndarray, names: tuple[str, ...], model_names: tuple[str, ...], source: str
) -> np.ndarray:
    """Re-index labels from a dataset's class names to a model's.

    A folder evaluated with a model trained on another folder may have fewer (or differently
    ordered) classes; its label ``i`` means ``names[i]``, which is ``model_names[j]``.

    Parameters
    ----------
    y : numpy.ndarray
        int labels, indices into ``names``, shape (n,).
    names : tuple of str
        The dataset's ``class_names``.
    model_names : tuple of str
        The class names the model was trained with, by its class index.
    source : str
        The data, for the error message.

    Returns
    -------
    numpy.ndarray
        int64 labels, indices into ``model_names``, shape (n,).

    Raises
    ------
    DataError
        If a class of the data that occurs in ``y`` is unknown to the model.
    """
    index = {name: j for j, name in enumerate(model_names)}
    used = np.unique(y)
    unknown = [names[i] for i in used if names[i] not in index]
    if unknown:
        raise DataError(
            f"{source}: classes {unknown[:5]} are not among the model's classes "
            f"{list(model_names)[:10]}; evaluate on data with the model's classes"
        )
    table = np.array([index.get(name, -1) for name in names], dtype=np.int64)
    return table[y]
