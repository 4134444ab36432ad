"""Binary convolutional EBP-D networks on packed bits: layer geometry and the NumPy kernels.

Conventions (CONV_SPEC.md; :mod:`ebprop.packed.pack` for the bit order):

* Tensors are NHWC. A packed ±1 activation of a conv or pool stage holds each pixel's channels
  in ``ceil(C / 64)`` uint64 words: (batch, H, W, words), channel c at bit c % 64 of word c // 64,
  padding bits 0. Before the first dense layer it is flattened in (y, x, c) order and packed as
  one vector, as a dense layer's input.
* The ``.ebpb`` stores a conv layer's weights as the sign bits of its dense-equivalent matrix
  H (k·k·C_in, C_out), rows ordered (ky, kx, c_in), one packed row per output channel:
  (C_out, ceil(k·k·C_in / 64)) — the convention of a dense layer's weights.

EBP-D arithmetic, all exact in integers:

* zero padding: a padded tap contributes 0, so only the valid taps count. For ±1 units,
  s = n_valid − 2·m with n_valid = (valid taps)·C_in and m the mismatches over the valid taps;
  the unit fires iff s ≥ T = ceil(−b).
* the first layer sees raw uint8 pixels p: s = Σ_valid w·p. Under ``unit`` scaling
  (x = p/m, m = max_value; a padded tap is a black pixel p = 0) it fires iff s ≥ ceil(−m·b).
  Under ``symmetric`` scaling (x = 2p/m − 1) it fires iff s ≥ ceil((m·Σw − m·b)/2), Σw the
  channel's weight sum (:func:`ebprop.packed.pack.pixel_thresholds`): the same kernels, only the
  thresholds differ. A padded tap would be x = 0, a pixel of m/2, which no uint8 window holds, so
  that scaling needs a first conv without padding (:func:`scaling_problem`).
* max-pool (k×k, stride k, remainder dropped): +1 iff any input in the window is +1 — an OR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..exceptions import ModelFormatError
from . import pack

KINDS = ("conv", "maxpool", "dense")
_KEYS = {
    "conv": {"kind", "channels", "kernel", "stride", "pad"},
    "maxpool": {"kind", "size"},
    "dense": {"kind", "units"},
}
_MAX_SIDE = 1 << 12  # image side, kernel, stride, pad: sane limits for a header
MAX_UNITS = 1 << 20  # channels or units of a layer (as fileformat.MAX_UNITS)
_CHUNK = 1 << 22  # elements of a kernel's largest temporary


@dataclass(frozen=True)
class Stage:
    """One layer of a conv model with its shapes; ``param`` indexes weights/thresholds (−1: pool).

    ``in_shape``/``out_shape`` are (H, W, C); a dense stage's input is the flattened (y, x, c)
    vector of ``in_shape`` and its output (1, 1, units).
    """

    kind: str
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    kernel: int = 1
    stride: int = 1
    pad: int = 0
    param: int = -1

    @property
    def n_rows(self) -> int:
        """Rows of the dense-equivalent weight matrix: k·k·C_in (conv) or H·W·C (dense)."""
        if self.kind == "conv":
            return self.kernel * self.kernel * self.in_shape[2]
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        return self.out_shape[2]


def layer_dicts(specs) -> list[dict]:
    """The ``.ebpb`` layer list of architecture specs (objects with ``channels, kernel, stride,
    pad`` for a conv, ``size`` for a max-pool, ``units`` for a dense layer)."""
    out = []
    for spec in specs:
        if hasattr(spec, "kernel"):
            out.append(
                {
                    "kind": "conv",
                    "channels": int(spec.channels),
                    "kernel": int(spec.kernel),
                    "stride": int(spec.stride),
                    "pad": int(spec.pad),
                }
            )
        elif hasattr(spec, "size"):
            out.append({"kind": "maxpool", "size": int(spec.size)})
        elif hasattr(spec, "units"):
            out.append({"kind": "dense", "units": int(spec.units)})
        else:
            raise ModelFormatError(f"unknown architecture layer {spec!r}")
    return out


def _is_int(v, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def plan(layers, image_shape, n_outputs: int, source: str = "<model>") -> list[Stage]:
    """Validate a conv model's hidden layer list and return its stages, output layer last.

    Parameters
    ----------
    layers : list of dict
        ``{"kind": "conv", "channels", "kernel", "stride", "pad"}``, ``{"kind": "maxpool",
        "size"}`` or ``{"kind": "dense", "units"}``; the first a conv, dense layers last.
    image_shape : sequence of int
        (H, W) or (H, W, C) of the raw images.
    n_outputs : int
        Units of the output layer.

    Raises
    ------
    ModelFormatError
        Naming ``source``, the layer and the problem.
    """

    def bad(i: int, what: str) -> ModelFormatError:
        return ModelFormatError(f"{source}: layers[{i}] {what}")

    if not isinstance(layers, list) or not layers:
        raise ModelFormatError(f"{source}: layers must be a non-empty list, got {layers!r}")
    if not (
        isinstance(image_shape, (list, tuple))
        and len(image_shape) in (2, 3)
        and all(_is_int(s, 1, _MAX_SIDE) for s in image_shape)
    ):
        raise ModelFormatError(
            f"{source}: image_shape must be [height, width] or [height, width, channels] of "
            f"integers in 1..{_MAX_SIDE}, got {image_shape!r}"
        )
    shape = tuple(image_shape) + (1,) * (3 - len(image_shape))
    stages: list[Stage] = []
    n_param = 0
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or layer.get("kind") not in KINDS:
            raise bad(i, f"must be an object whose kind is one of {KINDS}, got {layer!r}")
        kind = layer["kind"]
        if set(layer) != _KEYS[kind]:
            raise bad(i, f"({kind}) must have exactly the keys {sorted(_KEYS[kind])}")
        if i == 0 and kind != "conv":
            raise bad(i, f"is a {kind}; a conv model's first layer must be a conv")
        if kind != "dense" and stages and stages[-1].kind == "dense":
            raise bad(i, f"is a {kind} after a dense layer; dense layers come last")
        if kind == "conv":
            k, s, p, c = (layer[key] for key in ("kernel", "stride", "pad", "channels"))
            if not (_is_int(k, 1, _MAX_SIDE) and _is_int(s, 1, _MAX_SIDE)):
                raise bad(i, f"kernel {k!r} and stride {s!r} must be integers in 1..{_MAX_SIDE}")
            if not (_is_int(p, 0, _MAX_SIDE) and _is_int(c, 1, MAX_UNITS)):
                raise bad(
                    i, f"pad {p!r} must be in 0..{_MAX_SIDE}, channels {c!r} in 1..{MAX_UNITS}"
                )
            h, w = shape[0] + 2 * p, shape[1] + 2 * p
            if h < k or w < k:
                raise bad(i, f"a {k}x{k} kernel does not fit its {shape[0]}x{shape[1]} input")
            out = ((h - k) // s + 1, (w - k) // s + 1, c)
            stages.append(Stage("conv", shape, out, k, s, p, n_param))
            n_param += 1
        elif kind == "maxpool":
            k = layer["size"]
            if not _is_int(k, 1, _MAX_SIDE) or k > min(shape[:2]):
                raise bad(i, f"pool size {k!r} must be an integer in 1..{min(shape[:2])}")
            stages.append(Stage("maxpool", shape, (shape[0] // k, shape[1] // k, shape[2]), k, k))
        else:
            if not _is_int(layer["units"], 1, MAX_UNITS):
                raise bad(i, f"units {layer['units']!r} must be an integer in 1..{MAX_UNITS}")
            stages.append(Stage("dense", shape, (1, 1, layer["units"]), param=n_param))
            n_param += 1
        shape = stages[-1].out_shape
    stages.append(Stage("dense", shape, (1, 1, int(n_outputs)), param=n_param))
    return stages


def scaling_problem(scaling: str, stages: list[Stage]) -> str | None:
    """Why raw pixels under ``scaling`` cannot feed the first conv of ``stages``; None if they can.

    ``unit``: always. ``symmetric``: only without zero padding in the first conv (a padded tap is
    x = 0 there, which is no integer pixel sum away from the window's own).
    """
    if scaling == "unit":
        return None
    if scaling != "symmetric":
        return f"scaling {scaling!r} is not one of 'unit', 'symmetric'; retrain with --scaling unit"
    if stages[0].pad:
        return (
            f"scaling 'symmetric' with a zero-padded first conv (pad {stages[0].pad}): a padded "
            "tap is no uint8 pixel; retrain with --scaling unit or a first conv without padding"
        )
    return None


def sizes_of(stages: list[Stage]) -> tuple[int, ...]:
    """The model's ``sizes``: the flat input width of every weighted layer, then the outputs."""
    weighted = [s for s in stages if s.param >= 0]
    return tuple(int(np.prod(s.in_shape)) for s in weighted) + (weighted[-1].n_out,)


def weight_shapes(stages: list[Stage]) -> list[tuple[int, int]]:
    """Packed weight shape (n_out, ceil(n_rows / 64)) of every weighted layer."""
    return [(s.n_out, pack.n_words(s.n_rows)) for s in stages if s.param >= 0]


def check_arrays(stages: list[Stage], weights: list, thresholds: list, source: str) -> None:
    """Refuse weight or threshold arrays that do not fit the stages (:class:`ModelFormatError`
    naming ``source`` and the array)."""
    shapes = weight_shapes(stages)
    if len(weights) != len(shapes) or len(thresholds) != len(shapes) - 1:
        raise ModelFormatError(
            f"{source}: the layers need {len(shapes)} weight arrays and {len(shapes) - 1} "
            "threshold arrays"
        )
    rows = [st.n_rows for st in stages if st.param >= 0]
    for layer, (w, shape, n_in) in enumerate(zip(weights, shapes, rows, strict=True)):
        if w.dtype != np.uint64 or w.shape != shape:
            raise ModelFormatError(
                f"{source}: weights_{layer} has shape {w.shape} ({w.dtype}), expected {shape} "
                "uint64"
            )
        if not pack.padding_is_zero(w, n_in):
            raise ModelFormatError(f"{source}: weights_{layer} has non-zero padding bits")
    for layer, t in enumerate(thresholds):
        if t.shape != (shapes[layer][0],) or t.dtype.kind != "i" or t.dtype.itemsize < 2:
            raise ModelFormatError(
                f"{source}: thresholds_{layer} has shape {t.shape} ({t.dtype}), expected "
                f"({shapes[layer][0]},) int16/int32/int64"
            )


def threshold_ranges(stages: list[Stage], max_value: int) -> list[tuple[int, int]]:
    """[lo, hi] of the integer sum s of every hidden weighted layer (for clipping thresholds)."""
    out = []
    for s in stages[:-1]:
        if s.param < 0:
            continue
        bound = s.n_rows * (max_value if s.param == 0 else 1)
        out.append((-bound, bound))
    return out


def layers_text(model) -> str:
    """The network of a packed model in the architecture notation, output layer included:
    ``16C5-MP2-32C5-MP2-128-10`` for a CNN (stride and padding when not 1 and 0), the sizes
    ``784-256-256-10`` for an MLP."""
    if model.layers is None:
        return "-".join(map(str, model.sizes))
    tokens = []
    for x in model.layers:
        if x["kind"] == "conv":
            stride = f"s{x['stride']}" if x["stride"] != 1 else ""
            pad = f"p{x['pad']}" if x["pad"] else ""
            tokens.append(f"{x['channels']}C{x['kernel']}{stride}{pad}")
        else:
            tokens.append(f"MP{x['size']}" if x["kind"] == "maxpool" else str(x["units"]))
    return "-".join(tokens + [str(model.sizes[-1])])


def weight_count(model) -> int:
    """Number of (binary) weights of a packed model: Σ rows · columns of every weight matrix."""
    if model.layers is None:
        return sum(a * b for a, b in zip(model.sizes[:-1], model.sizes[1:], strict=True))
    stages = plan(model.layers, model.preprocessing["image_shape"], model.sizes[-1])
    return sum(st.n_rows * st.n_out for st in stages if st.param >= 0)


# ------------------------------------------------------------------------------------ geometry
def windows(x: np.ndarray, stage: Stage) -> np.ndarray:
    """Zero-padded k×k windows at the conv's output positions: (B, Ho, Wo, k, k, C) view."""
    p, k, s = stage.pad, stage.kernel, stage.stride
    ho, wo = stage.out_shape[:2]
    if p:
        x = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    v = sliding_window_view(x, (k, k), axis=(1, 2))  # (B, H', W', C, k, k)
    v = v[:, : s * (ho - 1) + 1 : s, : s * (wo - 1) + 1 : s]
    return v.transpose(0, 1, 2, 4, 5, 3)


def valid_taps(stage: Stage) -> np.ndarray:
    """(Ho, Wo, k·k) bool: which taps of each output position fall inside the image."""
    h, w = stage.in_shape[:2]
    ones = np.ones((1, h, w, 1), dtype=bool)
    return windows(ones, stage)[0, ..., 0].reshape(*stage.out_shape[:2], -1)


# ------------------------------------------------------------------------------------- kernels
class ConvForward:
    """The integer forward pass of a packed conv model, vectorised in NumPy.

    Parameters
    ----------
    stages : list of Stage
        From :func:`plan`.
    weights : list of ndarray uint64
        Packed weight rows of every weighted layer (see the module docstring).
    thresholds : list of ndarray int
        Integer thresholds of every hidden weighted layer (fires iff s ≥ T).
    """

    def __init__(self, stages: list[Stage], weights: list[np.ndarray], thresholds) -> None:
        self.stages = stages
        self.weights = weights
        self.thresholds = [np.asarray(t, dtype=np.int64) for t in thresholds]
        self._prep = {}
        for st in stages:
            if st.kind != "conv":
                continue
            bits = pack.unpack_bits(weights[st.param], st.n_rows)  # (C_out, k·k·C_in)
            if st.param == 0:  # ±1 as float64: pixel sums are exact integers (< 2^53)
                self._prep[st.param] = np.where(bits, 1.0, -1.0).T.copy()
            else:
                k, c_in = st.kernel, st.in_shape[2]
                taps = bits.reshape(st.n_out, k * k, c_in)
                words = pack.pack_bits(taps)  # (C_out, k·k, words(C_in))
                # Σ over a position's padded taps of popcount(0 XOR w): subtracted below
                invalid = ~valid_taps(st)  # (Ho, Wo, k·k)
                pop = taps.sum(axis=2).T  # (k·k, C_out): ones of each tap's weights
                correction = invalid.astype(np.int64) @ pop  # (Ho, Wo, C_out)
                n_valid = (~invalid).sum(axis=2) * c_in  # (Ho, Wo)
                self._prep[st.param] = (words, correction, n_valid)

    def pixel_conv(self, x: np.ndarray, st: Stage) -> np.ndarray:
        """s = Σ_valid w·p of the first conv: uint8 (B, H, W, C) → int64 (B, Ho, Wo, C_out)."""
        w = self._prep[st.param]
        patch = st.n_rows * int(np.prod(st.out_shape[:2]))
        step = max(1, _CHUNK // max(1, patch))
        out = np.empty((x.shape[0], *st.out_shape), dtype=np.int64)
        for a in range(0, x.shape[0], step):
            win = windows(x[a : a + step], st).astype(np.float64)
            out[a : a + step] = (win.reshape(*win.shape[:3], -1) @ w).astype(np.int64)
        return out

    def binary_conv(self, a: np.ndarray, st: Stage) -> np.ndarray:
        """s = n_valid − 2·m over the valid taps.

        Packed (B, H, W, words) → int64 (B, Ho, Wo, C_out).
        """
        words, correction, n_valid = self._prep[st.param]
        k = st.kernel
        per_image = int(np.prod(st.out_shape)) * words.shape[2]
        step = max(1, _CHUNK // max(1, per_image))
        m = np.zeros((a.shape[0], *st.out_shape), dtype=np.int64)
        for s in range(0, a.shape[0], step):
            win = windows(a[s : s + step], st)  # (b, Ho, Wo, k, k, words)
            for t in range(k * k):
                x = np.bitwise_xor(win[:, :, :, t // k, t % k, None, :], words[:, t, :])
                m[s : s + step] += np.bitwise_count(x).sum(axis=-1, dtype=np.int64)
        return n_valid[:, :, None] - 2 * (m - correction)

    @staticmethod
    def max_pool(a: np.ndarray, st: Stage) -> np.ndarray:
        """OR of the bits in each k×k window: (B, H, W, words) → (B, H//k, W//k, words)."""
        k = st.kernel
        ho, wo = st.out_shape[:2]
        a = a[:, : ho * k, : wo * k].reshape(a.shape[0], ho, k, wo, k, a.shape[3])
        return np.bitwise_or.reduce(np.bitwise_or.reduce(a, axis=4), axis=2)

    def preactivations(self, pixels: np.ndarray) -> list[np.ndarray]:
        """Integer sums of every weighted layer, the output layer's dots last.

        Parameters
        ----------
        pixels : ndarray uint8, shape (B, H, W, C)

        Returns
        -------
        list of int64 arrays: (B, Ho, Wo, C_out) per conv, (B, n_out) per dense layer.
        """
        out = []
        a = None  # packed activations of the stage's input; None: the pixels
        for st in self.stages:
            if st.kind == "maxpool":
                a = self.max_pool(a, st)
                continue
            if st.kind == "conv":
                s = self.pixel_conv(pixels, st) if a is None else self.binary_conv(a, st)
            else:
                if a.ndim == 4:  # flatten (y, x, c) and pack as one vector
                    c = st.in_shape[2]
                    bits = pack.unpack_bits(a, c).reshape(a.shape[0], -1)
                    a = pack.pack_bits(bits)
                s = pack.binary_dot(a, self.weights[st.param], st.n_rows).astype(np.int64)
            out.append(s)
            if st.param < len(self.thresholds):
                a = pack.pack_bits(s >= self.thresholds[st.param])
        return out
