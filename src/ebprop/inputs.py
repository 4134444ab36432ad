"""Inputs for a saved model: its dataset's splits, image files and ``.npy`` arrays as features.

What ``ebprop evaluate`` and ``ebprop predict`` do before they call the estimator, as functions
that Python users can call too. Pillow is imported only to read image files.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import align_labels, is_dataset_path, load_dataset, prepare_image
from .datasets.appearance import InputAppearanceWarning, appearance_warning, image_polarity
from .fileio import read_npy

__all__ = [
    "dataset_options",
    "apply_appearance",
    "invert_light",
    "model_data_dir",
    "model_features",
    "model_split",
    "npy_to_raw",
    "read_inputs",
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
    """Raw images and labels of ``split`` of the dataset a model was trained on, or of another.

    Parameters
    ----------
    model : :class:`ebprop.persist.LoadedModel`
        Its ``training_options`` give the dataset, folder and split options (validation, seed,
        test fraction, image size).
    split : {"test", "val", "train", "all"}
    dataset, data_dir : str, optional
        Override the recorded dataset / folder. Another dataset's labels are matched to the
        model's classes by name (:func:`ebprop.datasets.align_labels`); its images are resized
        to the model's image size and rescaled to its pixel range. The folder searched is chosen
        by :func:`model_data_dir`: ``data_dir``, the recorded one if it still exists,
        ``$EBPROP_DATA``, the user cache.

    Returns
    -------
    (images, labels, dataset name, warning or None) : labels are the model's classes; the
    warning says when the data's checksums differ from those recorded at training time.

    Raises
    ------
    ValueError
        When the model records no dataset and none is given, the split is empty, or the data
        hold a class the model does not know (:class:`ebprop.exceptions.DataError`).
    """
    opts = model.metadata.get("training_options") or {}
    name = dataset or opts.get("dataset")
    if not name:
        raise ValueError(
            "the model records no dataset; pass --dataset (or save it with "
            "metadata={'training_options': {'dataset': ...}})"
        )
    kwargs = dataset_options(opts)
    pre = model.preprocessor
    other = dataset is not None and dataset != opts.get("dataset")
    if other and is_dataset_path(dataset) and pre is not None and pre.max_value_ is not None:
        kwargs |= {"image_size": tuple(pre.image_shape_[:2]), "resize": "resize"}
    ds = load_dataset(name, model_data_dir(model, data_dir), **kwargs)
    warn = None
    recorded = model.metadata.get("checksums") or {}
    if recorded and dataset is None and recorded != ds.checksums:
        warn = "warning: the data's checksums differ from those recorded at training time"
    X, y = ds.split(split)
    if len(y) == 0:
        raise ValueError(f"the {split} split is empty for this model's dataset options")
    if other or model.metadata.get("class_names"):
        idx = align_labels(y, tuple(ds.class_names), model.class_names, str(name))
        y = model.estimator.classes_[idx]
    if other and pre is not None and ds.max_value not in (None, pre.max_value_):
        X = X.astype(np.float64) * (pre.max_value_ / ds.max_value)  # e.g. 16-bit data, 8-bit model
    return X, y, str(name), warn


def dataset_options(options: dict) -> dict:
    """The keyword arguments of :func:`ebprop.datasets.load_dataset` that ``options`` fix.

    ``options`` is a run's ``DataOptions.to_dict()``, or the stored ``training_options`` of a
    model; keys missing from older files take the defaults, so their splits are rebuilt
    unchanged.
    """
    d = options
    size = d.get("image_size")
    return {
        "validation": d.get("validation"),
        "seed": d.get("seed", 0),
        "test_fraction": d.get("test_fraction", 0.2),
        "test_seed": d.get("test_seed", 0),
        "image_size": tuple(size) if size is not None else None,
        "resize": d.get("resize", "refuse"),
        "background": d.get("background", "white"),
        "color": d.get("color", "grey"),
    }


def model_features(model: Any, images: np.ndarray) -> np.ndarray:
    """Features (n, n_features) of raw images (n, h, w[, 3]) through the model's preprocessor."""
    dtype = model.estimator.dtype
    if model.preprocessor is None:
        return images.reshape(len(images), -1).astype(dtype)
    return model.preprocessor.transform(images, dtype)


def invert_light(raw: np.ndarray, max_value: float, invert: str = "auto") -> np.ndarray:
    """Dark ink on a light page → the datasets' light ink on a dark ground.

    ``invert``: "yes", "no", or "auto" (invert when the mean of the border pixels of the
    (h, w) or (h, w, c) image ``raw`` is above half of ``max_value``).
    """
    border = np.concatenate([raw[0], raw[-1], raw[:, 0], raw[:, -1]])
    if invert == "yes" or (invert == "auto" and border.mean() > max_value / 2):
        return max_value - raw
    return raw


def npy_to_raw(path: str | os.PathLike, shape: tuple[int, ...]) -> np.ndarray:
    """Raw images (n, *shape) from a ``.npy`` of one image, a stack, or flattened rows.

    ``shape`` is ``(h, w)`` for a grey model, ``(h, w, 3)`` for an RGB one (flattened rows in
    (y, x, channel) order). For a model trained on features, ``shape`` is ``(d,)``: rows
    ``(n, d)`` or one ``(d,)``.
    """
    arr = read_npy(path)  # header, size and dtype checked first; DataError names the file
    if len(shape) == 1:
        rows = arr[None] if arr.ndim == 1 else arr
        if rows.ndim != 2 or rows.shape[1] != shape[0]:
            raise ValueError(
                f"{path}: array of shape {arr.shape}; expected feature rows (n, {shape[0]})"
            )
        return rows
    shape = tuple(shape)
    size = int(np.prod(shape))
    if arr.shape == shape:
        arr = arr[None]
    elif arr.ndim == 2 and arr.shape[1] == size:
        arr = arr.reshape(-1, *shape)
    elif arr.ndim == 1 and arr.shape[0] == size:
        arr = arr.reshape(1, *shape)
    if arr.shape[1:] != shape:
        dims = ", ".join(map(str, shape))
        hint = ""
        if len(shape) == 3 and arr.shape[-2:] == shape[:2]:
            hint = "; the model takes RGB images (channels last): give all three channels"
        elif len(shape) == 2 and arr.ndim >= 3 and arr.shape[-3:-1] == shape:
            hint = "; the model takes grey images: convert the colour images to grey"
        raise ValueError(
            f"{path}: array of shape {arr.shape}; expected ({dims}), (n, {dims}) or "
            f"(n, {size}) raw images{hint}"
        )
    return arr


def apply_appearance(
    raw: np.ndarray, max_value: float, invert: str, appearance: dict | None, name: str
) -> np.ndarray:
    """Image ``raw`` (h, w) or (h, w, 3) given the polarity the model expects, with a warning
    when it still looks unlike the training images.

    With ``appearance`` (the model's recorded ``input``): ``invert`` "no" keeps the image,
    "yes" inverts it, and "auto" inverts it only when its border gives the other polarity than
    the training images' (so a model trained on dark ink on white never sees its own kind of
    image inverted). Then an :class:`~ebprop.datasets.appearance.InputAppearanceWarning` when
    its polarity or mean intensity is far from the training images'. Without (models written
    before format 2): :func:`invert_light`, the old guess from the border.
    """
    if appearance is None:
        return invert_light(raw, max_value, invert)
    flip = invert == "yes" or (
        invert == "auto" and image_polarity(raw, max_value) != appearance["polarity"]
    )
    out = max_value - raw if flip else raw
    message = appearance_warning(out * (appearance["max_value"] / max_value), appearance, name)
    if message:
        warnings.warn(message, InputAppearanceWarning, stacklevel=2)
    return out


def read_raw_inputs(
    model: Any, paths: list[Path], invert: str = "auto"
) -> tuple[list[str], np.ndarray]:
    """Names and raw images (n, h, w) (or (n, h, w, 3) for an RGB model) of image files and
    ``.npy`` arrays, shaped for ``model``.

    Image files are decoded by :func:`ebprop.datasets.prepare_image` (grey, or RGB for a model
    trained on RGB images, at full bit depth, transparency on the recorded background, resized
    to the model's image size, rescaled to its ``max_value``), then given the model's polarity
    (:func:`apply_appearance`).

    Raises
    ------
    ValueError
        When the model has no preprocessor (its image shape is unknown), was trained on features
        rather than images (only ``.npy`` rows are accepted then), or a file is unreadable or too
        large (:class:`ebprop.exceptions.DataError`, naming it).
    FileNotFoundError
        For a missing file.
    """
    pre = model.preprocessor
    if pre is None:
        raise ValueError("the model has no preprocessor; cannot read images")
    appearance = model.metadata.get("input")
    return read_inputs(paths, tuple(pre.image_shape_), pre.max_value_, invert, appearance)


def read_inputs(
    paths: list[Path],
    shape: tuple[int, ...],
    max_value: float | None,
    invert: str = "auto",
    appearance: dict | None = None,
) -> tuple[list[str], np.ndarray]:
    """Names and raw inputs of image files and ``.npy`` arrays for a model of input ``shape``.

    ``shape`` is ``(h, w)`` (``(h, w, 3)`` for RGB) with pixels in ``0..max_value`` for an
    image model, ``(d,)`` with
    ``max_value`` None for a feature model (then only ``.npy`` rows are accepted). ``appearance``
    is the model's recorded ``input`` (None for older models). See :func:`read_raw_inputs`.
    """
    background = tuple(appearance["background"]) if appearance else (255, 255, 255)
    names, raws = [], []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        if path.suffix.lower() == ".npy":
            arr = npy_to_raw(path, shape)
            names += [f"{path}[{i}]" for i in range(len(arr))] if len(arr) > 1 else [str(path)]
            raws.append(arr)
        else:
            if max_value is None or len(shape) == 1:
                raise ValueError(
                    f"{path}: the model was trained on features, not images; give its inputs "
                    "as an .npy of rows (n, n_features)"
                )
            raw = prepare_image(path, shape, max_value, background=background)
            names.append(str(path))
            raw = apply_appearance(raw.astype(np.float64), max_value, invert, appearance, str(path))
            raws.append(raw[None])
    return names, np.concatenate(raws).astype(np.float64)
