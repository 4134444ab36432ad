"""The :class:`Dataset` container, data-directory resolution and validation splits."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["DATA_ENV", "Dataset", "default_cache_dir", "resolve_validation"]

#: Environment variable naming the data directory.
DATA_ENV = "EBPROP_DATA"


@dataclass(frozen=True)
class Dataset:
    """An image classification dataset with train, validation and test splits.

    Images are kept raw (as stored on disk); scaling and features are the job of
    :class:`~ebprop.datasets.Preprocessor`.

    Attributes
    ----------
    name : str
        ``"digits"``, ``"mnist"`` or ``"fashion-mnist"``.
    X_train, X_val, X_test : numpy.ndarray
        uint8 images of shape ``(n, h, w)`` with values in ``0..max_value``. ``X_val`` is held out
        from the official training set; ``X_test`` is the official test set. With no validation
        split ``X_val`` has shape ``(0, h, w)``.
    y_train, y_val, y_test : numpy.ndarray
        int64 labels of shape ``(n,)``.
    max_value : int
        Largest possible pixel value (255 for the MNIST family, 16 for digits).
    classes : numpy.ndarray
        The label values, sorted.
    checksums : dict of str to str
        SHA-256 of the uncompressed content of each file read, by canonical file name (empty for
        the bundled digits).
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    max_value: int
    classes: np.ndarray
    checksums: dict[str, str] = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(h, w)``, the shape of one image."""
        return (int(self.X_train.shape[1]), int(self.X_train.shape[2]))

    def __repr__(self) -> str:
        h, w = self.image_shape
        return (
            f"Dataset({self.name!r}, {h}x{w}, train={len(self.y_train)}, val={len(self.y_val)}, "
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
