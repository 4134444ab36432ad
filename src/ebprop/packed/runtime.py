"""PackedNetwork: the EBP-D network of a binary-weight model, run on packed bits.

Arithmetic (all exact):

* first layer, on raw uint8 pixels p: the integer s = Σ_j w_j p_j; unit k fires iff s_k ≥ T_k
  with T_k folded from the real bias in exact rational arithmetic
  (:func:`ebprop.packed.pack.pixel_thresholds`);
* hidden layers: dot = n − 2·popcount(a XOR w); fires iff dot ≥ T = ceil(−b);
* output layer: the integer dot, converted to the model's float dtype, plus the real bias (the
  very operation ``h @ W_L + b_L`` performs, whose products and sums of ±1 are exact), then
  argmax (first maximum on ties) or, for one output unit, ``≥ 0``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import ConvNetwork
from ..exceptions import DataError, ModelFormatError
from . import conv, pack
from .fileformat import PackedModel, read_packed, validate_model, write_packed

BACKENDS = ("auto", "numba", "numpy")


def _numba_kernels():
    try:
        from . import _kernels
    except ImportError:  # pragma: no cover - numba is installed in every supported setup
        return None
    return _kernels


def preprocessing_of(preprocessor: Any) -> dict:
    """The ``.ebpb`` preprocessing description of a fitted Preprocessor, or a clear error.

    Only pixel features with ``unit`` or ``symmetric`` scaling reduce to integers on raw pixels;
    filters, deskewing, ``standard`` and ``binary`` scaling are refused.
    """
    if preprocessor is None:
        raise ModelFormatError(
            "the model has no preprocessor; packed export needs to know how raw pixels are "
            "scaled (train with a Preprocessor, scaling='unit')"
        )
    meta, _ = preprocessor.get_state()
    problems = []
    if meta["scaling"] not in ("unit", "symmetric"):
        problems.append(f"scaling={meta['scaling']!r} (only 'unit' and 'symmetric')")
    if meta["filters"]:
        problems.append(f"filters={meta['filters']!r} (filter features are real-valued)")
    if meta["deskew"]:
        problems.append("deskew=True (interpolation is real-valued)")
    if not meta["keep_pixels"]:
        problems.append("keep_pixels=False")
    m = meta["max_value"]
    if m is None:  # a model of features (n, d) from an .npz: no pixels to pack
        raise ModelFormatError(
            "cannot export a model trained on features (not images) to the packed uint8-pixel "
            "runtime; packed export needs an image model"
        )
    if float(m) != int(m) or not 1 <= int(m) <= 255:
        problems.append(f"max_value={m!r} (must be an integer in 1..255 for uint8 pixels)")
    if problems:
        raise ModelFormatError(
            "cannot export this model's preprocessing to integer arithmetic on uint8 pixels: "
            + "; ".join(problems)
            + ". Retrain with Preprocessor(scaling='unit') and no filters/deskew."
        )
    return {
        "input": "uint8",
        "scaling": meta["scaling"],
        "max_value": int(m),
        "image_shape": [int(s) for s in meta["image_shape"]],
    }


def pack_estimator(
    estimator: Any,
    preprocessor: Any,
    source: dict | None = None,
    class_names: Any = None,
    input: dict | None = None,  # noqa: A002 - the header field's name
) -> PackedModel:
    """The packed EBP-D network of a fitted binary-weight EBPClassifier.

    Parameters
    ----------
    estimator : EBPClassifier
        Fitted, ``weights="binary"``, at least one hidden layer.
    preprocessor : Preprocessor
        Fitted; see :func:`preprocessing_of` for what is supported.
    source : dict, optional
        Free-form provenance stored in the file.
    class_names : sequence of str, optional
        One name per class (``LoadedModel.class_names``); default ``str(label)``.
    input : dict, optional
        How the training images looked (``LoadedModel.metadata["input"]``).

    Raises
    ------
    ModelFormatError
        For real weights, no hidden layer, or preprocessing that is not integer-reproducible.
    """
    if getattr(estimator, "weights", None) != "binary":
        raise ModelFormatError(
            f"only binary-weight models can be packed; this one has "
            f"weights={getattr(estimator, 'weights', None)!r}"
        )
    if not hasattr(estimator, "coefs_"):
        raise ModelFormatError("the estimator is not fitted")
    # EBP-D's biases: the refitted thresholds when the model has them (refit_deterministic).
    H = list(estimator.coefs_)
    b = list(getattr(estimator, "deterministic_intercepts_", None) or estimator.intercepts_)
    dtype = np.dtype(getattr(estimator, "dtype", "float32"))
    net = estimator.network() if getattr(estimator, "architecture", None) else None
    if isinstance(net, ConvNetwork):
        prep = preprocessing_of(preprocessor)
        shape = tuple(int(s) for s in net.input_shape)
        if int(np.prod(prep["image_shape"])) != int(np.prod(shape)):
            raise ModelFormatError(
                f"the preprocessor's images are {prep['image_shape']} but the network takes "
                f"{list(shape)}; refit the preprocessor on the training images"
            )
        prep["image_shape"] = list(shape if shape[2] > 1 else shape[:2])
        return pack_conv_network(
            net.specs[:-1],
            H,
            b,
            prep,
            estimator.classes_,
            dtype,
            source,
            class_names,
            input,
            input_gain=preprocessor.input_gain,
        )
    if len(H) < 2:
        raise ModelFormatError(
            "a packed model needs at least one hidden layer (a single linear layer on pixels "
            "has a real-valued output that integers cannot reproduce exactly)"
        )
    prep = preprocessing_of(preprocessor)
    sizes = (H[0].shape[0],) + tuple(h.shape[1] for h in H)
    m = prep["max_value"]
    bits = [pack.sign_weights(h) for h in H]
    thresholds = []
    for layer in range(len(H) - 1):
        n_in = sizes[layer]
        if layer == 0:
            wsum = 2 * bits[0].sum(axis=1, dtype=np.int64) - n_in
            t = pack.pixel_thresholds(b[0], wsum, m, prep["scaling"], preprocessor.input_gain)
            lo, hi = -n_in * m, n_in * m
        else:
            t, lo, hi = pack.hidden_thresholds(b[layer]), -n_in, n_in
        dt = pack.smallest_int_dtype(lo, hi + 1)
        thresholds.append(pack.clip_thresholds(t, lo, hi).astype(dt))
    model = PackedModel(
        sizes=sizes,
        weights=[pack.pack_bits(x) for x in bits],
        thresholds=thresholds,
        output_bias=np.asarray(b[-1], dtype=dtype).copy(),
        classes=np.asarray(estimator.classes_),
        preprocessing=prep,
        source=dict(source or {}),
        class_names=None if class_names is None else tuple(str(n) for n in class_names),
        input=input,
    )
    validate_model(model, "<estimator>")
    return model


def pack_conv_network(
    specs: Any,
    H: list[np.ndarray],
    b: list[np.ndarray],
    preprocessing: dict,
    classes: Any,
    dtype: Any = "float32",
    source: dict | None = None,
    class_names: Any = None,
    input: dict | None = None,  # noqa: A002 - the header field's name
    input_gain: float = 1.0,
) -> PackedModel:
    """The packed EBP-D network of a binary CNN from its parameters (CONV_SPEC.md).

    Parameters
    ----------
    specs : sequence of layer specs or dicts
        The hidden layers (``ebprop.core.architecture`` specs or :func:`conv.layer_dicts`
        dicts); the first a conv.
    H, b : lists of ndarray
        One per weighted layer, output layer last: H (k·k·C_in, C_out) rows (ky, kx, c_in) for
        a conv, (n_in, n_out) for a dense layer; b (n_out,). Weights are sign(H), sign(0) = +1.
    preprocessing : dict
        As :func:`preprocessing_of` returns; ``scaling`` ``unit``, or ``symmetric`` when the
        first conv has no padding (:func:`conv.scaling_problem`); ``image_shape`` (H, W) or
        (H, W, C).
    classes : array-like
        Labels of the output units (two classes: one output unit).
    dtype : float dtype of the output bias (the estimator's).
    source, class_names, input
        As for :func:`pack_estimator`.
    input_gain : float
        The preprocessor's ``input_gain``, folded into the first layer's thresholds.

    Raises
    ------
    ModelFormatError
        When the parameters do not fit the layers or the scaling cannot be exported.
    """
    layers = [dict(x) for x in specs] if specs and isinstance(specs[0], dict) else None
    layers = layers if layers is not None else conv.layer_dicts(specs)
    n_out = np.asarray(H[-1]).shape[1]
    stages = conv.plan(layers, preprocessing["image_shape"], n_out, "<estimator>")
    problem = conv.scaling_problem(preprocessing["scaling"], stages)
    if problem:
        raise ModelFormatError(f"cannot export this convolutional model: {problem}")
    weighted = [st for st in stages if st.param >= 0]
    if len(H) != len(weighted) or len(b) != len(weighted):
        raise ModelFormatError(
            f"the layers need {len(weighted)} weight matrices and biases, got {len(H)} and {len(b)}"
        )
    for st, h in zip(weighted, H, strict=True):
        if np.shape(h) != (st.n_rows, st.n_out):
            raise ModelFormatError(
                f"layer {st.param} ({st.kind}) has weights of shape {np.shape(h)}, expected "
                f"{(st.n_rows, st.n_out)}"
            )
    m = int(preprocessing["max_value"])
    thresholds = []
    for st, (lo, hi) in zip(weighted[:-1], conv.threshold_ranges(stages, m), strict=True):
        if st.param == 0:  # s = Σ w·p on raw pixels (pack.pixel_thresholds: either scaling)
            wsum = np.where(np.asarray(H[0]) >= 0, 1, -1).sum(axis=0)
            t = pack.pixel_thresholds(b[0], wsum, m, preprocessing["scaling"], input_gain)
        else:
            t = pack.pixel_thresholds(b[st.param], np.zeros(st.n_out), 1, "unit")  # ceil(−b)
        dt = pack.smallest_int_dtype(lo, hi + 1)
        thresholds.append(pack.clip_thresholds(t, lo, hi).astype(dt))
    model = PackedModel(
        sizes=conv.sizes_of(stages),
        weights=[pack.pack_bits(pack.sign_weights(h)) for h in H],
        thresholds=thresholds,
        output_bias=np.asarray(b[-1], dtype=np.dtype(dtype)).copy(),
        classes=np.asarray(classes),
        preprocessing={**preprocessing, "image_shape": list(preprocessing["image_shape"])},
        source=dict(source or {}),
        layers=layers,
        class_names=None if class_names is None else tuple(str(n) for n in class_names),
        input=input,
    )
    validate_model(model, "<estimator>")
    return model


@dataclass
class PackedNetwork:
    """A packed EBP-D network ready to classify raw uint8 images.

    Build with :meth:`from_estimator` or :meth:`load`; then :meth:`predict` on raw pixels
    ``(n, h, w)`` or ``(n, h*w)``.

    Parameters
    ----------
    model : PackedModel
    backend : {"auto", "numba", "numpy"}
        ``numba``: compiled popcount kernels (needs numba); ``numpy``: ``np.bitwise_count``;
        ``auto``: numba when importable.
    """

    model: PackedModel
    backend: str = "auto"

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        self._kernels = None
        if self.backend in ("auto", "numba"):
            self._kernels = _numba_kernels()
            if self._kernels is None and self.backend == "numba":
                raise ImportError("backend='numba' needs numba; pip install numba")
        m = self.model
        self._conv = None
        if m.layers is not None:  # a CNN: the NumPy kernels of packed.conv
            stages = conv.plan(m.layers, m.preprocessing["image_shape"], m.sizes[-1])
            self._conv = conv.ConvForward(stages, m.weights, m.thresholds)
            self._kernels = None
            return
        # First layer as ±1 int8 in (n_in, n_out): contiguous over units for the pixel sums.
        w0 = pack.unpack_bits(m.weights[0], m.sizes[0]).T
        self._w0_t = np.ascontiguousarray(np.where(w0, 1, -1).astype(np.int8))
        wide = any(t.dtype.itemsize > 4 for t in m.thresholds)
        self._t = [t.astype(np.int64 if wide else np.int32) for t in m.thresholds]
        self._ws = tuple(np.ascontiguousarray(w) for w in m.weights[1:])
        self._ns = np.array(m.sizes[1:-1], dtype=np.int64)
        self._ts = tuple(self._t[1:]) + (np.zeros(0, dtype=self._t[0].dtype),)

    # ------------------------------------------------------------------ construction / I/O
    @classmethod
    def from_estimator(
        cls, estimator: Any, preprocessor: Any, backend: str = "auto"
    ) -> PackedNetwork:
        """Pack a fitted binary EBPClassifier (see :func:`pack_estimator`)."""
        return cls(pack_estimator(estimator, preprocessor), backend)

    @classmethod
    def load(cls, path: str | os.PathLike, backend: str = "auto") -> PackedNetwork:
        """Read a ``.ebpb`` file (fully validated; :class:`ModelFormatError` when not valid)."""
        return cls(read_packed(path), backend)

    def save(self, path: str | os.PathLike) -> int:
        """Write the ``.ebpb`` file atomically; returns its size in bytes."""
        return write_packed(path, self.model)

    # ------------------------------------------------------------------ properties
    @property
    def sizes(self) -> tuple[int, ...]:
        return self.model.sizes

    @property
    def classes_(self) -> np.ndarray:
        return self.model.classes

    @property
    def weight_nbytes(self) -> int:
        """Bytes of the packed weight arrays (padding included)."""
        return sum(w.nbytes for w in self.model.weights)

    # ------------------------------------------------------------------ inference
    def check_pixels(self, pixels: Any) -> np.ndarray:
        """Validate raw images → uint8 (n, n_0), C-contiguous.

        Accepts (n, *image_shape), (n, n_0), or one image (image_shape or (n_0,)); image_shape
        is (h, w) or, for a colour CNN, (h, w, c).
        """
        prep = self.model.preprocessing
        shape = tuple(prep["image_shape"])
        n_in = int(np.prod(shape))
        text = "x".join(map(str, shape))
        x = np.asarray(pixels)
        if x.shape == shape and shape[0] != 1:
            x = x[None]
        elif x.ndim == 1:
            x = x[None]
        if x.ndim == len(shape) + 1 and x.ndim > 2:
            if x.shape[1:] != shape:
                raise DataError(
                    f"images are {'x'.join(map(str, x.shape[1:]))}; this model takes {text}"
                )
            x = x.reshape(x.shape[0], n_in)
        if x.ndim != 2 or x.shape[1] != n_in:
            raise DataError(
                f"pixels must have shape (n, {', '.join(map(str, shape))}) or (n, {n_in}), "
                f"got {np.shape(pixels)}"
            )
        if x.dtype != np.uint8:
            if not np.issubdtype(x.dtype, np.integer):
                raise DataError(
                    f"pixels must be raw integer values (uint8), got dtype {x.dtype}; "
                    "pass the images before scaling"
                )
            if x.size and (x.min() < 0 or x.max() > 255):
                raise DataError(f"pixel values span [{x.min()}, {x.max()}], outside [0, 255]")
            x = x.astype(np.uint8)
        if x.size and int(x.max()) > prep["max_value"]:
            raise DataError(
                f"pixel value {int(x.max())} exceeds this model's max_value {prep['max_value']}"
            )
        return np.ascontiguousarray(x)

    def _output_dots_numba(self, x: np.ndarray) -> np.ndarray:
        k = self._kernels
        n = x.shape[0]
        bufs = tuple(np.empty((n, pack.n_words(s)), dtype=np.uint64) for s in self.sizes[1:-1])
        out = np.empty((n, self.sizes[-1]), dtype=np.int64)
        if n >= k.PARALLEL_MIN_BATCH:
            import numba

            k.forward_parallel(
                x,
                self._w0_t,
                self._t[0],
                self._ws,
                self._ns,
                self._ts,
                bufs,
                out,
                numba.get_num_threads(),
            )
        else:
            k.forward_serial(
                x, self._w0_t, self._t[0], self._ws, self._ns, self._ts, bufs, out, 0, n
            )
        return out

    def integer_preactivations(self, pixels: Any) -> list[np.ndarray]:
        """The integer dot product of every layer, by the NumPy kernels (for inspection).

        Returns
        -------
        list of ndarray int32, one (n, n_{l+1}) per layer: s = Σ w p for the first layer,
        n − 2·popcount(a XOR w) for the others. For a CNN, int64 (n, Ho, Wo, C_out) per conv
        (s over the valid taps) and (n, n_out) per dense layer.
        """
        x = self.check_pixels(pixels)
        m = self.model
        if self._conv is not None:
            shape = tuple(m.preprocessing["image_shape"])
            images = x.reshape(x.shape[0], *shape[:2], shape[2] if len(shape) == 3 else 1)
            return self._conv.preactivations(images)
        dots = [pack.pixel_dot(x, m.weights[0])]
        for layer in range(1, len(m.weights)):
            a = pack.pack_bits(dots[-1] >= self._t[layer - 1])
            dots.append(pack.binary_dot(a, m.weights[layer], m.sizes[layer]))
        return dots

    def decision_function(self, pixels: Any) -> np.ndarray:
        """The EBP-D linear outputs, (n, n_L) in the model's float dtype ((n,) for one unit)."""
        x = self.check_pixels(pixels)
        if self._kernels is not None:
            dots = self._output_dots_numba(x)
        else:
            dots = self.integer_preactivations(x)[-1]
        bias = self.model.output_bias
        out = dots.astype(bias.dtype) + bias  # one rounding, as in h @ W_L + b_L
        return out[:, 0] if out.shape[1] == 1 else out

    def predict(self, pixels: Any) -> np.ndarray:
        """Class labels of raw images (argmax, first maximum on ties; ≥ 0 for one unit)."""
        out = self.decision_function(pixels)
        idx = (out >= 0).astype(np.intp) if out.ndim == 1 else out.argmax(axis=1)
        return self.model.classes[idx]
