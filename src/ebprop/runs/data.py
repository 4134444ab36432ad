"""The one feature loader: :class:`DataOptions` → train/validation/test features and labels.

Every training method (EBP and the baselines) gets its inputs here, so all see identical data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.architecture import is_convolutional, parse_architecture
from ..datasets import Preprocessor, load_dataset
from ..datasets.appearance import describe_images, parse_background
from ..datasets.augment import epoch_shifts, shift_images
from ..exceptions import DataError
from ..inputs import dataset_options
from ..params import check_input_scale
from .options import DataOptions

__all__ = [
    "Features",
    "check_features",
    "conv_input_shape",
    "epoch_train_features",
    "load_features",
]


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
    train_images : the raw training images (n, h, w) or (n, h, w, 3), kept only when the run
        augments them.
    blank_images : training images whose pixels are all one value (empty, or fully
        transparent on the background): they cannot teach anything.
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
    blank_images: int = 0

    @property
    def input_shape(self) -> tuple[int, int, int] | None:
        """(height, width, channels) of a feature row when it is a whole image, else None.

        None for datasets of features and when filters change the features (conv layers then
        have no image to slide over).
        """
        shape = getattr(self.preprocessor, "image_shape_", None)
        if shape is None or len(shape) not in (2, 3):
            return None
        if self.X_train.shape[1] != int(np.prod(shape)):
            return None
        return (int(shape[0]), int(shape[1]), int(shape[2]) if len(shape) == 3 else 1)

    def class_indices(self, part: str) -> np.ndarray:
        """Labels of split ``part`` ("train", "val", "test") as indices 0..n_classes-1 (int64)."""
        y = getattr(self, f"y_{part}")
        return np.searchsorted(self.classes, y).astype(np.int64)


def conv_input_shape(options: Any, data: Features) -> tuple[int, int, int] | None:
    """(height, width, channels) that the conv layers of ``options.architecture`` see, from the
    data; None for an MLP (no architecture, or dense layers only). Every method's run (EBP's
    and the baselines') gets it here.

    Raises
    ------
    ValueError
        One line, when the architecture has conv layers but the data are not whole images.
    """
    architecture = getattr(options, "architecture", None)
    if architecture is None or not is_convolutional(parse_architecture(architecture)):
        return None
    if data.input_shape is None:
        raise ValueError(
            f"architecture {architecture!r}: conv layers need images, but {options.dataset} gives "
            f"{data.X_train.shape[1]} features per sample (a dataset of features, or --filters, "
            "which change them): leave --filters out or use --hidden"
        )
    return data.input_shape


def load_features(options: DataOptions, keep_train_images: bool = False) -> Features:
    """Load the dataset, split it, fit the preprocessor on the training images, transform all.

    Parameters
    ----------
    options : DataOptions (or any subclass; only the data fields are read).
    keep_train_images : keep the raw training images as ``train_images``, for
        :func:`epoch_train_features` to shift each epoch (ValueError when the dataset holds
        features, not images).
    """
    ds = load_dataset(options.dataset, options.data_dir, **dataset_options(options.to_dict()))
    if keep_train_images and not ds.is_images:
        raise ValueError(
            f"augment_shift: {options.dataset} holds features (n, d), not images; shifts need "
            "images (leave --augment-shift out)"
        )
    pre = Preprocessor(
        scaling=options.scaling,
        filters=options.filters,
        deskew=options.deskew,
        input_gain=options.input_gain,
    )
    pre.fit(ds.X_train, ds.max_value)
    dt = np.dtype(options.dtype)
    # features beyond the dtype's range become inf here; check_features refuses them in one line
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return Features(
            X_train=pre.transform(ds.X_train, dt),
            y_train=ds.y_train,
            X_val=pre.transform(ds.X_val, dt)
            if len(ds.y_val)
            else np.empty((0, pre.n_features_), dt),
            y_val=ds.y_val,
            X_test=pre.transform(ds.X_test, dt),
            y_test=ds.y_test,
            classes=np.asarray(ds.classes),
            checksums=dict(ds.checksums),
            preprocessor=pre,
            class_names=tuple(ds.class_names),
            train_images=ds.X_train if keep_train_images else None,
            blank_images=_count_blank(ds.X_train),
            appearance=(
                describe_images(ds.X_train, ds.max_value, parse_background(options.background))
                if ds.is_images and ds.max_value is not None
                else None
            ),
        )


def _count_blank(images: np.ndarray) -> int:
    """Images (n, h, w[, 3]) whose pixels all equal their first one; 0 for feature rows."""
    if images.ndim not in (3, 4) or not len(images):
        return 0
    flat = images.reshape(len(images), -1)
    return int(sum(int((c == c[:, :1]).all(axis=1).sum()) for c in _chunks(flat)))


def _chunks(a: np.ndarray, rows: int = 4096):
    for start in range(0, len(a), rows):
        yield a[start : start + rows]


def check_features(data: Features, options: Any) -> None:
    """Refuse training features EBP cannot use, and warn about settings that cannot learn.

    Raises
    ------
    DataError
        Naming the dataset: features that are NaN or infinite in the run's dtype (values beyond
        its range), or so large that the forward pass would overflow
        (:func:`ebprop.params.check_input_scale`). Checked before anything is written.

    Warns
    -----
    UserWarning
        A batch larger than the training set (one update per epoch); training images that load
        blank (every pixel one value: empty, or fully transparent); an ``augment_shift`` of at
        least half the image, which moves most drawings out of the frame.
    """
    import warnings

    X, where = data.X_train, f"dataset {options.dataset}"
    if not all(np.isfinite(c).all() for c in _chunks(X)):
        raise DataError(
            f"{where}: its features are NaN or infinite in {X.dtype}: values or a max_value "
            f"outside its range ({np.finfo(X.dtype).tiny:.2g} to {np.finfo(X.dtype).max:.2g}); "
            "rescale the data, or use --dtype float64"
        )
    try:
        check_input_scale(X, X.dtype)
    except ValueError as exc:
        raise DataError(f"{where}: {exc}") from None
    n = len(data.y_train)
    if options.batch_size > n:
        warnings.warn(
            f"batch_size {options.batch_size} is larger than the {n} training samples: each "
            f"epoch is a single update; use a batch of at most {max(1, n // 10)}",
            UserWarning,
            stacklevel=2,
        )
    if data.blank_images:
        warnings.warn(
            f"{where}: {data.blank_images} of {n} training images load blank "
            "(every pixel one value: empty, or fully transparent); they cannot teach anything. "
            "Check them, or --background for transparent drawings",
            UserWarning,
            stacklevel=2,
        )
    shape = getattr(data.preprocessor, "image_shape_", None)
    shift = getattr(options, "augment_shift", 0)
    if shift and shape is not None and len(shape) >= 2 and 2 * shift >= min(shape[:2]):
        warnings.warn(
            f"augment_shift {shift} is at least half the {shape[0]}x{shape[1]} images: most "
            f"shifts move the drawing out of the frame; use at most {max(1, min(shape[:2]) // 4)}",
            UserWarning,
            stacklevel=2,
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

    if data.train_images is None:
        raise ValueError("augmentation needs the raw training images: "
                         "load_features(..., keep_train_images=True) keeps them")  # fmt: skip
    offsets = epoch_shifts(len(data.train_images), max_shift, seed, epoch)
    return data.preprocessor.transform(shift_images(data.train_images, offsets), data.X_train.dtype)
