"""Inputs for a saved model: its dataset's splits, image files and ``.npy`` arrays as features.

What ``ebprop evaluate`` and ``ebprop predict`` do before they call the estimator, as functions
that Python users can call too. Pillow is imported only to read image files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "image_to_raw",
    "model_data_dir",
    "model_features",
    "model_split",
    "npy_to_raw",
    "read_raw_inputs",
]


def model_data_dir(model: Any, data_dir: str | os.PathLike | None = None) -> str | None:
    """The folder to look for a model's dataset in: ``data_dir`` (``--data-dir``) when given,
    else the folder recorded at training time while it still exists, else None, which makes
    :func:`ebprop.datasets.load_dataset` search ``$EBPROP_DATA`` and then the user cache.
    """
    if data_dir is not None:
        return str(data_dir)
    recorded = (model.metadata.get("training_options") or {}).get("data_dir")
    if isinstance(recorded, str) and recorded and Path(recorded).is_dir():
        return recorded
    return None  # gone (another machine, a moved folder) or never recorded


def model_split(
    model: Any, split: str = "test", dataset: str | None = None, data_dir: str | None = None
) -> tuple[np.ndarray, np.ndarray, str, str | None]:
    """Raw images and labels of ``split`` of the dataset a model was trained on.

    Parameters
    ----------
    model : :class:`ebprop.persist.LoadedModel`
        Its ``training_options`` give the dataset, folder, validation split and seed.
    split : {"test", "val", "train"}
    dataset, data_dir : str, optional
        Override the recorded dataset / folder. The folder searched is chosen by
        :func:`model_data_dir`: ``data_dir``, the recorded one if it still exists,
        ``$EBPROP_DATA``, the user cache.

    Returns
    -------
    (images, labels, dataset name, warning or None) : the warning says when the data's checksums
    differ from those recorded at training time.

    Raises
    ------
    ValueError
        When the model records no dataset and none is given, or the split is empty.
    """
    from .datasets import load_dataset

    opts = model.metadata.get("training_options") or {}
    name = dataset or opts.get("dataset")
    if not name:
        raise ValueError("the model records no dataset; pass --dataset")
    ds = load_dataset(
        name,
        model_data_dir(model, data_dir),
        validation=opts.get("validation"),
        seed=opts.get("seed", 0),
    )
    warn = None
    recorded = model.metadata.get("checksums") or {}
    if recorded and dataset is None and recorded != ds.checksums:
        warn = "warning: the data's checksums differ from those recorded at training time"
    X, y = {"train": (ds.X_train, ds.y_train), "val": (ds.X_val, ds.y_val)}.get(
        split, (ds.X_test, ds.y_test)
    )
    if len(y) == 0:
        raise ValueError(f"the {split} split is empty for this model's dataset options")
    return X, y, name, warn


def model_features(model: Any, images: np.ndarray) -> np.ndarray:
    """Features (n, n_features) of raw images (n, h, w) through the model's preprocessor."""
    dtype = model.estimator.dtype
    if model.preprocessor is None:
        return images.reshape(len(images), -1).astype(dtype)
    return model.preprocessor.transform(images, dtype)


def image_to_raw(
    path: str | os.PathLike, shape: tuple[int, int], max_value: float, invert: str = "auto"
) -> np.ndarray:
    """A PNG/JPEG as a raw training-like image (h, w): grayscale, light digit on dark ground.

    ``invert``: "yes", "no", or "auto" (invert when the border is light: dark ink on white).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            gray = np.asarray(im.convert("L").resize(shape[::-1], Image.Resampling.LANCZOS))
    except UnidentifiedImageError as exc:
        raise ValueError(f"{path}: not an image Pillow can read") from exc
    gray = gray.astype(np.float64) / 255.0
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if invert == "yes" or (invert == "auto" and border.mean() > 0.5):
        gray = 1.0 - gray  # dark ink on a light page → the datasets' light ink on dark
    return np.clip(np.rint(gray * max_value), 0, max_value)


def npy_to_raw(path: str | os.PathLike, shape: tuple[int, int]) -> np.ndarray:
    """Raw images (n, h, w) from a ``.npy`` of one image, a stack, or flattened rows."""
    arr = np.load(path, allow_pickle=False)
    h, w = shape
    if arr.ndim == 2 and arr.shape == (h, w):
        arr = arr[None]
    elif arr.ndim == 2 and arr.shape[1] == h * w:
        arr = arr.reshape(-1, h, w)
    elif arr.ndim == 1 and arr.shape[0] == h * w:
        arr = arr.reshape(1, h, w)
    if arr.ndim != 3 or arr.shape[1:] != (h, w):
        raise ValueError(
            f"{path}: array of shape {arr.shape}; expected ({h}, {w}), (n, {h}, {w}) or "
            f"(n, {h * w}) raw images"
        )
    return arr


def read_raw_inputs(
    model: Any, paths: list[Path], invert: str = "auto"
) -> tuple[list[str], np.ndarray]:
    """Names and raw images (n, h, w) of image files and ``.npy`` arrays, shaped for ``model``.

    Raises
    ------
    ValueError
        When the model has no preprocessor (its image shape is unknown) or a file is unreadable.
    FileNotFoundError
        For a missing file.
    """
    pre = model.preprocessor
    if pre is None:
        raise ValueError("the model has no preprocessor; cannot read images")
    shape, max_value = tuple(pre.image_shape_), pre.max_value_
    names, raws = [], []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        if path.suffix.lower() == ".npy":
            arr = npy_to_raw(path, shape)
            names += [f"{path}[{i}]" for i in range(len(arr))] if len(arr) > 1 else [str(path)]
            raws.append(arr)
        else:
            names.append(str(path))
            raws.append(image_to_raw(path, shape, max_value, invert)[None])
    return names, np.concatenate(raws).astype(np.float64)
