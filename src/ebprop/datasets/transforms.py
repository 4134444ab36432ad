"""Preprocessing: deskewing, spatial filter features and input scaling, fitted on train only.

The pipeline of :class:`Preprocessor`, in order, on raw images ``(n, h, w)``:

1. ``u = images / max_value`` (the "unit" space, pixels in [0, 1]);
2. optional moment-based deskewing of ``u`` (:func:`deskew`);
3. features: the pixels ``u`` (``keep_pixels``), then each kernel's response, average-pooled by
   ``pool``, each flattened row-major. Pixels and Gaussian responses lie in [0, 1] ("unsigned");
   gradient, Laplacian and Gabor responses in [-1, 1] ("signed");
4. scaling, per feature:

   ==========  ====================  =================================
   scaling     unsigned (pixels)     signed (edge responses)
   ==========  ====================  =================================
   unit        u                     r
   symmetric   2u - 1                r
   binary      +1 if u >= 0.5 else -1  +1 if abs(r) >= 0.5 else -1
   standard    (x - mean) / std, both fitted on the training images
   ==========  ====================  =================================

5. ``input_gain`` g multiplies the scaled features (default 1). For EBP this is the first
   layer's bias prior: with inputs g·x a unit's statistics and updates are those of inputs x
   with a bias of variance 1/g² (docs/conv.md, "Input gain").

RGB images ``(n, h, w, 3)`` (your own data read with ``color="rgb"``) become their pixels in
(y, x, channel) order, the NHWC layout of the conv layers; filters and deskewing are for grey
images and refuse them.

Feature vectors ``(n, d)`` (your own ``.npz`` of features, ``max_value=None``) have no fixed
range: ``u = (x - min) / (max - min)`` per feature, with the minimum and maximum fitted on the
training set (a constant feature gives ``u = x - min``), then the same scalings. Filters,
deskewing and pooling need images and are refused for features.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from ebprop.datasets.deskew import deskew
from ebprop.datasets.filters import FILTER_BANKS, Kernel, apply_kernel, avg_pool, parse_filters
from ebprop.exceptions import DataError

__all__ = ["SCALINGS", "STATE_VERSION", "Preprocessor", "check_input_gain", "deskew"]

#: Scaling names accepted by :class:`Preprocessor`.
SCALINGS = ("unit", "symmetric", "binary", "standard")
#: Version of the :meth:`Preprocessor.get_state` format.
STATE_VERSION = 1
_STATE_KIND = "ebprop.Preprocessor"
_META_KEYS = {
    "kind",
    "version",
    "scaling",
    "filters",
    "kernels",
    "signed",
    "keep_pixels",
    "pool",
    "deskew",
    "max_value",
    "image_shape",
    "n_features",
}
_OPTIONAL_KEYS = {"input", "input_gain"}  # written only when not at their defaults
_INPUTS = ("images", "features")  # the optional "input" key; absent in states before features
_CHUNK = 8192  # images per chunk: bounds the temporaries to a few hundred MB on MNIST
_MIN_STD = 1e-6  # features with a smaller training std are only centred (e.g. MNIST's corners)


def check_input_gain(value: object) -> float:
    """The ``input_gain`` setting as a float; ValueError "input_gain must be …" otherwise."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)
    if not (ok and math.isfinite(value) and value > 0):
        raise ValueError(f"input_gain must be a positive finite number, got {value!r}")
    return float(value)


def _color_hint(got: tuple[int, ...], fitted: tuple[int, ...]) -> str:
    """The fix when grey images meet an RGB preprocessor or the other way round, else ''."""
    if len(fitted) == 3 and len(got) == 2:
        return "; it takes RGB images (h, w, 3): read them in colour (color='rgb')"
    if len(fitted) == 2 and len(got) == 3:
        return "; it takes grey images (h, w): convert them to grey (color='grey')"
    return ""


class Preprocessor:
    """Turn raw images into feature vectors: deskew, filter, pool, scale.

    Parameters
    ----------
    scaling : {"unit", "symmetric", "binary", "standard"}
        Input scaling (see the module docstring). ``standard`` is fitted on the images given to
        :meth:`fit`; the others have no fitted parameters.
    filters : str, sequence of str or None
        Filter banks (see :func:`~ebprop.datasets.filters.parse_filters`), e.g. ``"default"``,
        ``"sobel,laplace"``, ``["gabor"]``; None or ``"none"`` for pixels only.
    keep_pixels : bool
        Keep the pixels as the first ``h * w`` features (True) or output filter responses only.
    pool : int
        Average-pool each filter response over ``pool x pool`` blocks (pixels are not pooled).
    deskew : bool
        Deskew the images first (:func:`deskew`).
    input_gain : float > 0
        Multiplies the scaled features (module docstring, step 5).

    Attributes
    ----------
    n_features_ : int
        Width of the output of :meth:`transform` (after :meth:`fit`).
    image_shape_ : tuple of int
        ``(h, w)`` seen by :meth:`fit`; ``(h, w, 3)`` for RGB images.
    max_value_ : float
        Largest possible raw pixel value, from :meth:`fit`.
    mean_, scale_ : numpy.ndarray or None
        Per-feature mean and standard deviation, shape (n_features_,), for ``standard`` scaling.
    input_ : {"images", "features"} or None
        What :meth:`fit` saw: images ``(n, h, w)`` or feature vectors ``(n, d)``. For features
        ``image_shape_`` is ``(d,)`` and ``max_value_`` None.
    low_, span_ : numpy.ndarray or None
        For features: the training minimum and range of each feature, shape (d,).
    """

    def __init__(
        self,
        scaling: str = "unit",
        filters: str | Sequence[str] | None = None,
        keep_pixels: bool = True,
        pool: int = 1,
        deskew: bool = False,
        input_gain: float = 1.0,
    ) -> None:
        if scaling not in SCALINGS:
            raise ValueError(f"unknown scaling {scaling!r}; choose from {', '.join(SCALINGS)}")
        if isinstance(pool, bool) or not isinstance(pool, numbers.Integral) or pool < 1:
            raise ValueError(f"pool must be an integer >= 1, got {pool!r}")
        self.scaling = scaling
        self.filters = parse_filters(filters)
        self.keep_pixels = bool(keep_pixels)
        self.pool = int(pool)
        self.deskew = bool(deskew)
        self.input_gain = check_input_gain(input_gain)
        if not self.keep_pixels and not self.filters:
            raise ValueError("keep_pixels=False with no filters leaves no features; add filters")
        self.kernels: tuple[Kernel, ...] = tuple(k for b in self.filters for k in FILTER_BANKS[b])
        self.image_shape_: tuple[int, int] | None = None
        self.max_value_: float | None = None
        self.n_features_: int | None = None
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.input_: str | None = None
        self.low_: np.ndarray | None = None
        self.span_: np.ndarray | None = None

    def __repr__(self) -> str:
        return (
            f"Preprocessor(scaling={self.scaling!r}, filters={','.join(self.filters) or 'none'!r}, "
            f"keep_pixels={self.keep_pixels}, pool={self.pool}, deskew={self.deskew}, "
            f"input_gain={self.input_gain:g})"
        )

    # -- validation -------------------------------------------------------------------------
    def _check_images(self, images: np.ndarray, max_value: float | None, where: str) -> np.ndarray:
        images = np.asarray(images)
        if max_value is None:  # feature vectors
            if images.ndim != 2:
                raise DataError(
                    f"{where}: features must have shape (n, d), got shape {images.shape}; "
                    "images (n, h, w) need their max_value"
                )
        elif images.ndim == 4 and images.shape[3] == 3:
            pass  # RGB images, channels last
        elif images.ndim != 3:
            raise DataError(
                f"{where}: images must have shape (n, h, w), got shape {images.shape}; "
                "reshape flat rows with X.reshape(-1, h, w), or pass max_value=None for "
                "feature vectors"
            )
        if not (np.issubdtype(images.dtype, np.number) or images.dtype == np.bool_):
            raise DataError(f"{where}: images must be numeric, got dtype {images.dtype}")
        if images.shape[0] == 0 and where == "fit":
            raise DataError("fit: got 0 images")
        if images.size:
            if images.dtype.kind == "f" and not np.isfinite(images).all():
                raise DataError(f"{where}: images contain NaN or infinite values")
            if max_value is None:
                return images
            lo, hi = images.min(), images.max()
            if lo < 0 or hi > max_value:
                raise DataError(
                    f"{where}: pixel values span [{lo}, {hi}], outside [0, {max_value}]; pass "
                    "raw images and their max_value (255 for MNIST, 16 for digits)"
                )
        return images

    def _check_fitted(self) -> None:
        if self.n_features_ is None:
            raise DataError("this Preprocessor is not fitted yet; call fit() first")

    # -- the pipeline -----------------------------------------------------------------------
    def _features(self, images: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Unscaled features of a chunk of raw images, shape (n, n_features_)."""
        if self.input_ == "features":
            return (images.astype(dtype) - self.low_.astype(dtype)) / self.span_.astype(dtype)
        u = images.astype(dtype) / dtype.type(self.max_value_)
        if self.deskew:
            u = deskew(u)
        n = len(u)
        parts = [u.reshape(n, -1)] if self.keep_pixels else []
        for kernel in self.kernels:
            parts.append(avg_pool(apply_kernel(u, kernel.weights), self.pool).reshape(n, -1))
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]

    def _signed_mask(self) -> np.ndarray:
        """Boolean mask of the signed features, shape (n_features_,)."""
        if self.input_ == "features":
            return np.zeros(self.image_shape_[0], bool)
        h, w = self.image_shape_[:2]
        per_map = (-(-h // self.pool)) * (-(-w // self.pool))
        pixels = int(np.prod(self.image_shape_))
        pieces = [np.zeros(pixels, bool)] if self.keep_pixels else []
        pieces += [np.full(per_map, k.signed) for k in self.kernels]
        return np.concatenate(pieces)

    def _scale_inplace(self, X: np.ndarray, signed: np.ndarray) -> None:
        if self.scaling == "symmetric":
            X[:, ~signed] = 2 * X[:, ~signed] - 1
        elif self.scaling == "binary":
            strong = np.where(signed, np.abs(X), X) >= 0.5
            X[...] = np.where(strong, 1, -1)
        elif self.scaling == "standard":
            X -= self.mean_.astype(X.dtype)
            X /= self.scale_.astype(X.dtype)
        if self.input_gain != 1.0:
            X *= X.dtype.type(self.input_gain)

    def fit(self, images: np.ndarray, max_value: float | None) -> Preprocessor:
        """Fit on the training images (``standard`` scaling, and the range of features).

        Parameters
        ----------
        images : numpy.ndarray
            Raw training images, shape (n, h, w), values in ``[0, max_value]``; or feature
            vectors, shape (n, d), with ``max_value=None``.
        max_value : float or None
            Largest possible raw value (``Dataset.max_value``); None for feature vectors.

        Returns
        -------
        Preprocessor
            self
        """
        if max_value is not None and (
            isinstance(max_value, bool) or not isinstance(max_value, numbers.Real) or max_value <= 0
        ):
            raise ValueError(f"max_value must be a positive number, got {max_value!r}")
        images = self._check_images(images, max_value, "fit")
        self.low_ = self.span_ = None
        if max_value is None:
            if self.filters or self.deskew or self.pool != 1:
                raise DataError(
                    "fit: filters, deskew and pool need images (n, h, w); these data are "
                    f"feature vectors {images.shape}: use filters=None, deskew=False, pool=1"
                )
            self.input_ = "features"
            low, high = images.min(axis=0).astype(np.float64), images.max(axis=0)
            span = high.astype(np.float64) - low
            self.low_, self.span_ = low, np.where(span < _MIN_STD, 1.0, span)
        else:
            self.input_ = "images"
            h, w = images.shape[1:3]
            if images.ndim == 4 and (self.filters or self.deskew):
                raise DataError(
                    f"fit: filters and deskew work on grey images; these are RGB {images.shape}: "
                    "use filters=None and deskew=False (or read the images with color='grey')"
                )
            if self.pool > min(h, w):
                raise ValueError(f"pool={self.pool} is larger than the {h}x{w} images")
        self.max_value_ = max_value
        self.image_shape_ = tuple(int(s) for s in images.shape[1:])
        self.n_features_ = len(self._signed_mask())
        self.mean_ = self.scale_ = None
        if self.scaling == "standard":
            total = np.zeros(self.n_features_)
            total_sq = np.zeros(self.n_features_)
            for start in range(0, len(images), _CHUNK):
                F = self._features(images[start : start + _CHUNK], np.dtype(np.float64))
                total += F.sum(axis=0)
                total_sq += np.square(F).sum(axis=0)
            mean = total / len(images)
            std = np.sqrt(np.maximum(total_sq / len(images) - mean**2, 0.0))
            self.mean_ = mean
            self.scale_ = np.where(std < _MIN_STD, 1.0, std)
        return self

    def transform(self, images: np.ndarray, dtype: type | np.dtype = np.float32) -> np.ndarray:
        """Features of raw images, with the steps fitted by :meth:`fit`.

        Parameters
        ----------
        images : numpy.ndarray
            Raw images, shape (n, h, w) (or (n, h, w, 3)) as fitted, values in ``[0, max_value]``.
        dtype : numpy dtype
            Floating output dtype (float32 or float64).

        Returns
        -------
        numpy.ndarray
            shape (n, n_features_), ``dtype``.
        """
        self._check_fitted()
        dtype = np.dtype(dtype)
        if dtype.kind != "f":
            raise ValueError(f"dtype must be a floating type, got {dtype}")
        images = self._check_images(images, self.max_value_, "transform")
        if images.shape[1:] != self.image_shape_:
            raise DataError(
                f"transform: {self.input_} of shape {'x'.join(map(str, images.shape[1:]))}, "
                f"but this Preprocessor was fitted on {'x'.join(map(str, self.image_shape_))}"
                + _color_hint(images.shape[1:], self.image_shape_)
            )
        signed = self._signed_mask()
        out = np.empty((len(images), self.n_features_), dtype=dtype)
        for start in range(0, len(images), _CHUNK):
            X = self._features(images[start : start + _CHUNK], dtype)
            self._scale_inplace(X, signed)
            out[start : start + len(X)] = X
        return out

    def fit_transform(
        self, images: np.ndarray, max_value: float, dtype: type | np.dtype = np.float32
    ) -> np.ndarray:
        """``fit(images, max_value).transform(images, dtype)``."""
        return self.fit(images, max_value).transform(images, dtype)

    # -- persistence --------------------------------------------------------------------------
    def get_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Everything needed to rebuild this fitted preprocessor, without pickle.

        Returns
        -------
        meta : dict
            JSON-serialisable settings (``kind``, ``version``, scaling, filters, ...).
        arrays : dict of str to numpy.ndarray
            The kernels as used (``kernel_0``, ...), and ``mean``/``scale`` for standard scaling.
        """
        self._check_fitted()
        meta = {
            "kind": _STATE_KIND,
            "version": STATE_VERSION,
            "scaling": self.scaling,
            "filters": list(self.filters),
            "kernels": [k.name for k in self.kernels],
            "signed": [k.signed for k in self.kernels],
            "keep_pixels": self.keep_pixels,
            "pool": self.pool,
            "deskew": self.deskew,
            "max_value": self.max_value_,
            "image_shape": list(self.image_shape_),
            "n_features": self.n_features_,
        }
        if self.input_gain != 1.0:  # states without it keep their format (and gain 1)
            meta["input_gain"] = self.input_gain
        arrays = {f"kernel_{i}": k.weights.copy() for i, k in enumerate(self.kernels)}
        if self.input_ == "features":  # images keep the state format of before features
            meta["input"] = "features"
            arrays["low"], arrays["span"] = self.low_.copy(), self.span_.copy()
        if self.scaling == "standard":
            arrays["mean"] = self.mean_.copy()
            arrays["scale"] = self.scale_.copy()
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict, arrays: dict[str, np.ndarray]) -> Preprocessor:
        """Rebuild a fitted preprocessor from :meth:`get_state`'s output.

        The saved kernels are used as saved, so a model keeps its exact preprocessing even if a
        later version changes a bank.

        Raises
        ------
        DataError
            On an unknown kind or version, missing or unknown keys, or inconsistent arrays.
        """
        kind = meta.get("kind") if isinstance(meta, dict) else None
        if kind != _STATE_KIND:
            raise DataError(f"not a Preprocessor state: kind={kind!r}, expected {_STATE_KIND!r}")
        if meta.get("version") != STATE_VERSION:
            raise DataError(
                f"Preprocessor state version {meta.get('version')!r} is not supported "
                f"(this ebprop reads version {STATE_VERSION}); upgrade ebprop"
            )
        keys = set(meta) - _OPTIONAL_KEYS
        if keys != _META_KEYS or meta.get("input", "images") not in _INPUTS:
            raise DataError(
                f"Preprocessor state: missing keys {sorted(_META_KEYS - keys)}, "
                f"unknown keys {sorted(keys - _META_KEYS)}, input {meta.get('input')!r}"
            )
        features = meta.get("input") == "features"
        try:
            pre = cls(
                scaling=meta["scaling"],
                filters=meta["filters"],
                keep_pixels=meta["keep_pixels"],
                pool=meta["pool"],
                deskew=meta["deskew"],
                input_gain=meta.get("input_gain", 1.0),
            )
        except ValueError as exc:
            raise DataError(f"Preprocessor state: {exc}") from exc
        n_k = len(pre.kernels)
        expected = {f"kernel_{i}" for i in range(n_k)}
        if meta["scaling"] == "standard":
            expected |= {"mean", "scale"}
        if features:
            expected |= {"low", "span"}
        if set(arrays) != expected or len(meta["kernels"]) != n_k or len(meta["signed"]) != n_k:
            raise DataError(
                f"Preprocessor state: arrays {sorted(arrays)} do not match the settings "
                f"(expected {sorted(expected)})"
            )
        pre.kernels = tuple(
            Kernel(str(name), np.asarray(arrays[f"kernel_{i}"], dtype=np.float64), bool(signed))
            for i, (name, signed) in enumerate(zip(meta["kernels"], meta["signed"], strict=True))
        )
        pre.input_ = "features" if features else "images"
        pre.max_value_ = meta["max_value"]
        pre.image_shape_ = tuple(int(v) for v in meta["image_shape"])
        if len(pre.image_shape_) not in ((1,) if features else (2, 3)) or (
            len(pre.image_shape_) == 3 and pre.image_shape_[2] != 3
        ):
            raise DataError(f"Preprocessor state: bad image_shape {meta['image_shape']!r}")
        if features:
            pre.low_ = np.asarray(arrays["low"], dtype=np.float64)
            pre.span_ = np.asarray(arrays["span"], dtype=np.float64)
            if {pre.low_.shape, pre.span_.shape} != {pre.image_shape_} or not (pre.span_ > 0).all():
                raise DataError(
                    f"Preprocessor state: low/span must have shape {pre.image_shape_} with "
                    "positive span"
                )
        pre.n_features_ = len(pre._signed_mask())
        if pre.n_features_ != meta["n_features"]:
            raise DataError(
                f"Preprocessor state: settings give {pre.n_features_} features, "
                f"state says {meta['n_features']}"
            )
        if meta["scaling"] == "standard":
            pre.mean_ = np.asarray(arrays["mean"], dtype=np.float64)
            pre.scale_ = np.asarray(arrays["scale"], dtype=np.float64)
            shapes = {pre.mean_.shape, pre.scale_.shape}
            if shapes != {(pre.n_features_,)} or not (pre.scale_ > 0).all():
                raise DataError(
                    f"Preprocessor state: mean/scale must have shape ({pre.n_features_},) "
                    "with positive scale"
                )
        return pre
