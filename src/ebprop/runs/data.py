"""The one feature loader: :class:`DataOptions` → train/validation/test features and labels.

Every training method (EBP and the baselines) gets its inputs here, so all see identical data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .options import DataOptions

__all__ = ["Features", "epoch_train_features", "load_features"]


@dataclass
class Features:
    """Features (n, n_features) and labels (n,) of each split, as a run trains on them.

    Attributes
    ----------
    X_train, X_val, X_test : float arrays in the options' dtype (X_val may have 0 rows).
    y_train, y_val, y_test : labels (the dataset's own values).
    classes : (n_classes,) sorted labels.
    class_names : the name of each class, by index (``Dataset.class_names``).
    checksums : the dataset files' checksums (a resume refuses changed data).
    preprocessor : the fitted :class:`ebprop.datasets.Preprocessor` (saved with the model).
    train_images : the raw training images (n, h, w), kept only when the run augments them.
    appearance : how the training images looked (:func:`ebprop.datasets.appearance.
        describe_images`; the model header's ``input``), None for feature data.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: np.ndarray
    checksums: dict
    preprocessor: Any
    class_names: tuple[str, ...] = ()
    train_images: np.ndarray | None = None
    appearance: dict | None = None

    @property
    def input_shape(self) -> tuple[int, int, int] | None:
        """(height, width, channels) of a feature row when it is a whole image, else None.

        None for datasets of features and when filters change the features (conv layers then
        have no image to slide over).
        """
        shape = getattr(self.preprocessor, "image_shape_", None)
        if shape is None or len(shape) != 2 or self.X_train.shape[1] != shape[0] * shape[1]:
            return None
        return (int(shape[0]), int(shape[1]), 1)

    def class_indices(self, part: str) -> np.ndarray:
        """Labels of split ``part`` ("train", "val", "test") as indices 0..n_classes-1 (int64)."""
        y = getattr(self, f"y_{part}")
        return np.searchsorted(self.classes, y).astype(np.int64)


def load_features(options: DataOptions, keep_train_images: bool = False) -> Features:
    """Load the dataset, split it, fit the preprocessor on the training images, transform all.

    Parameters
    ----------
    options : DataOptions (or any subclass; only the data fields are read).
    keep_train_images : keep the raw training images as ``train_images``, for
        :func:`epoch_train_features` to shift each epoch (ValueError when the dataset holds
        features, not images).
    """
    from ..datasets import Preprocessor, load_dataset
    from ..datasets.appearance import describe_images
    from ..inputs import dataset_options

    ds = load_dataset(options.dataset, options.data_dir, **dataset_options(options.to_dict()))
    if keep_train_images and ds.X_train.ndim != 3:
        raise ValueError(
            f"augment_shift: {options.dataset} holds features (n, d), not images; shifts need "
            "images (leave --augment-shift out)"
        )
    pre = Preprocessor(scaling=options.scaling, filters=options.filters, deskew=options.deskew)
    pre.fit(ds.X_train, ds.max_value)
    dt = np.dtype(options.dtype)
    return Features(
        X_train=pre.transform(ds.X_train, dt),
        y_train=ds.y_train,
        X_val=pre.transform(ds.X_val, dt) if len(ds.y_val) else np.empty((0, pre.n_features_), dt),
        y_val=ds.y_val,
        X_test=pre.transform(ds.X_test, dt),
        y_test=ds.y_test,
        classes=np.asarray(ds.classes),
        checksums=dict(ds.checksums),
        preprocessor=pre,
        class_names=tuple(ds.class_names),
        train_images=ds.X_train if keep_train_images else None,
        appearance=(
            describe_images(ds.X_train, ds.max_value)
            if ds.X_train.ndim == 3 and ds.max_value is not None
            else None
        ),
    )


def epoch_train_features(data: Features, max_shift: int, seed: int, epoch: int) -> np.ndarray:
    """The training features of one epoch (epoch counts from 1).

    With ``max_shift`` 0, ``data.X_train`` itself. Otherwise the raw training images, each shifted
    by its offset of this epoch (:func:`ebprop.datasets.augment.epoch_shifts`, drawn from
    ``seed`` and ``epoch`` only), then preprocessed as ``X_train`` was: filters, deskewing and
    scaling see the shifted image.
    """
    if not max_shift:
        return data.X_train
    from ..datasets.augment import epoch_shifts, shift_images

    if data.train_images is None:
        raise ValueError("augmentation needs the raw training images: "
                         "load_features(..., keep_train_images=True) keeps them")  # fmt: skip
    offsets = epoch_shifts(len(data.train_images), max_shift, seed, epoch)
    return data.preprocessor.transform(shift_images(data.train_images, offsets), data.X_train.dtype)
