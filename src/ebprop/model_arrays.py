"""The arrays of a model file (:mod:`ebprop.persist`): their shapes from the header, and checks."""

from __future__ import annotations

import numpy as np

from .core.architecture import DenseSpec, parse_architecture
from .core.convnet import parameter_shapes
from .exceptions import ModelFormatError

__all__ = ["check_model_arrays", "layer_shapes"]


def layer_shapes(architecture: dict, src: str) -> list[tuple[int, int]]:
    """(n_in, n_out) of every coef_<l> the header's ``architecture`` implies."""
    sizes = architecture["sizes"]
    if "layers" not in architecture:
        return list(zip(sizes[:-1], sizes[1:], strict=True))
    try:
        specs = (*parse_architecture(architecture["layers"]), DenseSpec(int(sizes[-1])))
        return parameter_shapes(specs, tuple(architecture["input_shape"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{src}: header 'architecture' malformed ({exc})") from exc


def check_model_arrays(header: dict, arrays: dict[str, np.ndarray], src: str) -> list[int]:
    """Check a model file's arrays against its header; returns ``architecture.sizes``.

    Every array the header's ``arrays`` lists is present with that shape and dtype and finite;
    ``coef_<l>``/``intercept_<l>`` fit the architecture; the optional per-layer arrays
    (``det_intercept_<l>``, ``bias_precision_<l>``) are there for all layers or none, one value
    per unit, precisions > 0. :class:`ModelFormatError` names the file and the array.
    """
    manifest = header["arrays"]
    sizes = header["architecture"].get("sizes")
    if not isinstance(manifest, dict) or not isinstance(sizes, list) or len(sizes) < 2:
        raise ModelFormatError(f"{src}: header 'arrays'/'architecture.sizes' malformed")
    shapes = layer_shapes(header["architecture"], src)
    n_layers = len(shapes)
    if n_layers != len(sizes) - 1:
        raise ModelFormatError(
            f"{src}: header 'architecture' has {n_layers} layers and sizes {sizes}"
        )
    expected = {f"coef_{i}" for i in range(n_layers)} | {f"intercept_{i}" for i in range(n_layers)}
    expected |= {"classes"}
    if not expected <= set(manifest):
        raise ModelFormatError(
            f"{src}: header lists arrays {sorted(manifest)}, "
            f"missing {sorted(expected - set(manifest))}"
        )
    missing = sorted(set(manifest) - set(arrays))
    extra = sorted(set(arrays) - set(manifest))
    if missing or extra:
        raise ModelFormatError(
            f"{src}: arrays do not match header: missing {missing}, extra {extra}"
        )
    for name, spec in manifest.items():
        if not isinstance(spec, dict):
            raise ModelFormatError(f"{src}: header 'arrays.{name}' must be a JSON object")
        a = arrays[name]
        if list(a.shape) != list(spec.get("shape", [])) or a.dtype.str != spec.get("dtype"):
            raise ModelFormatError(
                f"{src}: array {name!r} has shape {a.shape} and dtype {a.dtype.str}; header says "
                f"{tuple(spec.get('shape', []))} and {spec.get('dtype')}"
            )
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ModelFormatError(f"{src}: array {name!r} contains NaN or infinite values")
    for prefix, what in (
        ("det_intercept", "refitted EBP-D biases"),
        ("bias_precision", "conv bias precisions"),
    ):
        per_layer = [f"{prefix}_{i}" for i in range(n_layers)]
        if any(name in arrays for name in per_layer) and not all(n in arrays for n in per_layer):
            raise ModelFormatError(f"{src}: {what} present for only some layers")
        for i, name in enumerate(per_layer):
            if name in arrays and arrays[name].shape != (sizes[i + 1],):
                raise ModelFormatError(
                    f"{src}: array {name!r} has shape {arrays[name].shape}; layer {i} needs "
                    f"{(sizes[i + 1],)}"
                )
            if prefix == "bias_precision" and name in arrays and not (arrays[name] > 0).all():
                raise ModelFormatError(f"{src}: array {name!r} holds a precision that is not > 0")
    for i, shape in enumerate(shapes):
        if arrays[f"coef_{i}"].shape != tuple(shape) or arrays[f"intercept_{i}"].shape != (
            shape[1],
        ):
            raise ModelFormatError(
                f"{src}: layer {i} arrays have shapes {arrays[f'coef_{i}'].shape} and "
                f"{arrays[f'intercept_{i}'].shape}; architecture {sizes} needs "
                f"{tuple(shape)} and {(shape[1],)}"
            )
    return sizes
