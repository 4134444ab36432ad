"""The network an :class:`~ebprop.EBPClassifier`'s parameters describe: dense or conv.

:func:`build_network` draws a fresh network or wraps the fitted ``coefs_``/``intercepts_``
(checked); :func:`float64_network` is the copy EBP-P predicts with; :func:`readout_outputs` is
what a readout gives for inputs, in chunks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from .core import (
    ConvNetwork,
    Network,
    WeightFamily,
    init_conv_network,
    init_network,
    make_family,
    output_z,
    predict_deterministic,
)
from .core.architecture import DenseSpec, LayerSpec, layer_shapes
from .core.convnet import parameter_shapes

__all__ = [
    "attach_bias_precisions",
    "build_network",
    "precisions_attached",
    "network_from_arrays",
    "conv_network_from_arrays",
    "float64_network",
    "readout_outputs",
    "resolve_input_shape",
]

#: Rows per forward pass at prediction time: bounds memory on big inputs.
PREDICT_CHUNK = 4096
#: The same for conv networks, whose im2col rows are positions × samples.
CONV_CHUNK = 128


def resolve_input_shape(input_shape, n_features: int) -> tuple[int, int, int]:
    """The (height, width, channels) of the inputs: ``input_shape``, or a square grey image.

    ValueError when ``input_shape`` does not multiply to ``n_features``, or when it is None and
    ``n_features`` is not a perfect square.
    """
    if input_shape is None:
        side = int(round(np.sqrt(n_features)))
        if side * side != n_features:
            raise ValueError(
                f"input_shape: X has {n_features} features, not a square grey image; give "
                "input_shape=(height, width, channels)"
            )
        return (side, side, 1)
    shape = tuple(int(d) for d in input_shape)
    if int(np.prod(shape)) != n_features:
        raise ValueError(
            f"input_shape {shape} has {int(np.prod(shape))} values, X has {n_features} features"
        )
    return shape  # type: ignore[return-value]


def network_from_arrays(
    coefs: Sequence[np.ndarray],
    intercepts: Sequence[np.ndarray],
    family: WeightFamily,
    dtype: np.dtype,
    n_features: int,
    n_outputs: int,
    **options: Any,
) -> Network:
    """A :class:`Network` over given parameters, checked: layer count, shapes, finiteness.

    Arrays already of ``dtype`` and C-contiguous are shared, not copied (training updates them).
    ``options``: further :class:`Network` fields (from :func:`ebprop.params.network_plan`).
    ValueError names the layer and the expected shapes.
    """
    sizes = [n_features] + [c.shape[1] for c in coefs]
    if len(coefs) != len(intercepts):
        raise ValueError("coefs_ and intercepts_ must have the same number of layers")
    H, b = [], []
    for layer, (c, i) in enumerate(zip(coefs, intercepts, strict=True)):
        c = np.asarray(c, dtype=dtype, order="C")
        i = np.asarray(i, dtype=dtype).reshape(-1)
        if c.shape != (sizes[layer], sizes[layer + 1]) or i.shape != (sizes[layer + 1],):
            raise ValueError(
                f"layer {layer}: coefs_ has shape {c.shape} and intercepts_ {i.shape}; "
                f"expected {(sizes[layer], sizes[layer + 1])} and {(sizes[layer + 1],)}"
            )
        if not (np.isfinite(c).all() and np.isfinite(i).all()):
            raise ValueError(f"layer {layer}: coefs_/intercepts_ contain NaN or Inf")
        H.append(c)
        b.append(i)
    if sizes[-1] != n_outputs:
        raise ValueError(f"the last layer has {sizes[-1]} units, expected {n_outputs}")
    return Network(family=family, H=H, b=b, **options)


def conv_network_from_arrays(
    coefs: Sequence[np.ndarray],
    intercepts: Sequence[np.ndarray],
    family: WeightFamily,
    dtype: np.dtype,
    specs: Sequence[LayerSpec],
    input_shape: tuple[int, int, int],
    n_outputs: int,
) -> ConvNetwork:
    """A :class:`ConvNetwork` over given parameters, checked (layer count, shapes, finiteness).

    ``specs`` are the hidden layers; the output layer of ``n_outputs`` units is added. Arrays of
    ``dtype`` and C-contiguous are shared. ValueError names the layer and the expected shapes.
    """
    specs = (*specs, DenseSpec(n_outputs))
    layer_shapes(specs, input_shape)  # ValueError naming a token that does not fit
    expected = parameter_shapes(specs, input_shape)
    if len(coefs) != len(expected) or len(intercepts) != len(expected):
        raise ValueError(
            f"coefs_/intercepts_ have {len(coefs)}/{len(intercepts)} layers; the architecture "
            f"has {len(expected)}"
        )
    H, b = [], []
    for layer, (c, i, shape) in enumerate(zip(coefs, intercepts, expected, strict=True)):
        c = np.asarray(c, dtype=dtype, order="C")
        i = np.asarray(i, dtype=dtype).reshape(-1)
        if c.shape != shape or i.shape != (shape[1],):
            raise ValueError(
                f"layer {layer}: coefs_ has shape {c.shape} and intercepts_ {i.shape}; "
                f"expected {shape} and {(shape[1],)}"
            )
        if not (np.isfinite(c).all() and np.isfinite(i).all()):
            raise ValueError(f"layer {layer}: coefs_/intercepts_ contain NaN or Inf")
        H.append(c)
        b.append(i)
    return ConvNetwork(family=family, specs=specs, input_shape=tuple(input_shape), H=H, b=b)


def build_network(
    est, plan: tuple, rng: np.random.Generator | None = None
) -> Network | ConvNetwork:
    """The network of an :class:`~ebprop.EBPClassifier`: over its ``coefs_``/``intercepts_``
    (checked), or freshly initialised from ``rng`` (needs ``n_features_in_``, ``n_outputs_``).

    ``plan``: :func:`ebprop.params.network_plan` of ``est`` (hidden widths, conv specs or None,
    the core Network's options), so that this module needs nothing above the core.
    """
    sizes, specs, options = plan
    family = make_family(est.weights, est.prior_variance)
    dtype = est.float_dtype()
    shape = None if specs is None else resolve_input_shape(est.input_shape, est.n_features_in_)
    if rng is None and specs is not None:
        return conv_network_from_arrays(
            est.coefs_, est.intercepts_, family, dtype, specs, shape, est.n_outputs_
        )
    if rng is None:
        return network_from_arrays(
            est.coefs_, est.intercepts_, family, dtype, est.n_features_in_, est.n_outputs_,
            **options,
        )  # fmt: skip
    if specs is not None:
        specs = (*specs, DenseSpec(est.n_outputs_))
        return init_conv_network(specs, shape, family, rng, est.init_variance, dtype)
    sizes = (est.n_features_in_, *sizes, est.n_outputs_)
    return init_network(sizes, family, rng, est.init_variance, dtype, **options)


def attach_bias_precisions(
    net: Network | ConvNetwork, step: str, held: list[np.ndarray] | None
) -> list[np.ndarray] | None:
    """Give ``net`` the conv bias precisions τ of ``conv_bias_step`` ``step`` and return them:
    ``held`` (an estimator's ``conv_bias_precisions_``), else ones (a model trained with the
    plain step continues from τ = 1); None for the plain step, ``"sum"``. ValueError when
    ``held`` does not match the layers' biases."""
    shapes = [b.shape for b in net.b]
    if step == "sum":
        held = None
    elif held is None:
        held = [np.ones(shape, dtype=np.float64) for shape in shapes]
    elif [t.shape for t in held] != shapes:
        raise ValueError(
            f"conv_bias_precisions_ has shapes {[t.shape for t in held]}; the layers' biases "
            f"{shapes}"
        )
    if isinstance(net, ConvNetwork):
        net.bias_precision = held
    return held


def precisions_attached(
    net: Network | ConvNetwork, step: str, held: list[np.ndarray] | None
) -> bool:
    """Whether ``net`` trains with what :func:`attach_bias_precisions` would give it."""
    if step == "sum":
        return getattr(net, "bias_precision", None) is None
    return held is not None and getattr(net, "bias_precision", None) is held


def float64_network(net: Network | ConvNetwork) -> Network | ConvNetwork:
    """A float64 copy of ``net`` (for EBP-P predictions that do not depend on the batch)."""
    H, b = [h.astype(np.float64) for h in net.H], [c.astype(np.float64) for c in net.b]
    if isinstance(net, ConvNetwork):
        return ConvNetwork(net.family, net.specs, net.input_shape, H, b)
    return dataclasses.replace(net, H=H, b=b, M=[], M2=[])  # the same options, moments anew


def readout_outputs(
    net: Network | ConvNetwork,
    X: np.ndarray,
    readout: str,
    n_outputs: int,
    deterministic_intercepts: list[np.ndarray] | None = None,
) -> np.ndarray:
    """EBP-P z-scores (``"probabilistic"``) or EBP-D linear outputs (``"deterministic"``) of
    ``net`` for ``X`` (n, n_features), shape (n, ``n_outputs``), computed in chunks.

    EBP-P runs in float64: float32 products round differently by row count (BLAS kernels), so a
    batch and its rows differed by 1.5e-7. EBP-D keeps the training dtype (the packed runtime
    reproduces its ±1 sums exactly), with ``deterministic_intercepts`` when refitted.
    """
    if readout == "probabilistic":
        net = float64_network(net)
        X = X.astype(np.float64, copy=False)
    out = np.empty((X.shape[0], n_outputs), dtype=net.dtype)
    if readout == "deterministic":
        W = [net.family.most_probable(h) for h in net.H]
    step = CONV_CHUNK if isinstance(net, ConvNetwork) else PREDICT_CHUNK
    for s in range(0, X.shape[0], step):
        chunk = X[s : s + step]
        if readout == "probabilistic":
            out[s : s + step] = output_z(net, chunk)
        else:
            out[s : s + step] = predict_deterministic(net, chunk, W, deterministic_intercepts)
    return out
