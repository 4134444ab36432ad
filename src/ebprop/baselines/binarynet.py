"""BinaryNet (Hubara, Courbariaux, Soudry, El-Yaniv & Bengio 2016) and its fold into an EBP-D model.

Training network (float, torch autograd):

- every layer keeps real "shadow" weights W, clipped to [-1, 1] after each Adam step; the
  forward pass uses sign(W) (+1 for W >= 0);
- hidden units are sign(y) (+1 for y >= 0) of the pre-activation y = BN(α·s + b), with
  s = sign(W)·h the layer's dot product, α = 1/sqrt(fan_in) a constant, b an optional bias and
  BN an optional batch normalisation (running statistics at test time);
- the straight-through estimator with the hard-tanh cancellation: ∂sign(y)/∂y is taken as
  1 where |y| ≤ 1 and 0 elsewhere (:class:`SignSTE`); the weights use the same estimator,
  which passes every gradient since the clipped |W| never exceeds 1;
- the output layer is α·s + b without batch normalisation (softmax cross-entropy, or the
  logistic loss for one output unit), so that its argmax is that of s + b/α: the EBP-D output
  layer's form. Departures from the paper, on purpose: cross-entropy instead of the squared
  hinge loss (every method shares one loss) and no batch normalisation of the output layer
  (per-class slopes have no place in the bit-packed output).

Test-time network (:meth:`BinaryNet.sign_predict`): the same signs, in float64, with every
dot product an exact integer — on uint8-valued pixels the first layer takes the integer pixel
dot product s = Σ_j sign(W)_j p_j and its real input Σ_j sign(W)_j x_j is computed from s
(x = p/m, or 2p/m − 1 with ``scaling="symmetric"``, times the preprocessor's ``input_gain`` g).
Each unit's pre-activation is then a
composition of IEEE operations, each monotone in s (a product by γ < 0 reverses the order), so
the set of integers s on which a unit fires is exactly {s ≥ T} or {s ≤ T}. :meth:`BinaryNet.fold`
finds each T by bisection *on the very function the test-time network evaluates*, flips the
weight row of every decreasing unit (γ < 0) so that all units fire on s ≥ T, and writes T as
the EBP-D biases that :mod:`ebprop.packed.pack` turns back into exactly T. The folded model is
an ordinary binary EBP model file (``method: binarynet`` in its header).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ebprop.estimator import EBPClassifier
from ebprop.exceptions import ModelFormatError
from ebprop.packed import pack
from ebprop.packed.runtime import preprocessing_of
from ebprop.persist import save_model

__all__ = [
    "BinaryNet",
    "FoldedNetwork",
    "Pixels",
    "SignSTE",
    "folded_estimator",
    "input_pixels",
    "output_classes",
    "pixel_input",
    "preactivation",
    "save_binarynet",
    "smallest_firing",
    "threshold_biases",
    "unit_constants",
]

_CHUNK = 4096


def output_classes(out: np.ndarray) -> np.ndarray:
    """Class indices (n,) int64 of output values (n, n_L): the first maximum, or for one output
    unit (two classes) 1 where it is ≥ 0."""
    if out.shape[1] == 1:
        return (out[:, 0] >= 0).astype(np.int64)
    return out.argmax(axis=1).astype(np.int64)


class SignSTE(torch.autograd.Function):
    """sign(x) (+1 for x >= 0) forward; gradient g·1{|x| ≤ 1} backward (hard-tanh STE)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def _sign(w: torch.Tensor) -> torch.Tensor:
    return torch.where(w >= 0, 1.0, -1.0).to(torch.float64)


class Pixels(NamedTuple):
    """What uint8-pixel features are: x = g·p/m (``unit``) or g·(2p/m − 1) (``symmetric``)."""

    scaling: str
    max_value: int
    gain: float = 1.0


def pixel_input(preprocessor: Any) -> Pixels | None:
    """:class:`Pixels` when the features are uint8 pixels scaled g·p/m or g·(2p/m − 1), else
    None (then the test-time first layer takes the float features and the model cannot be
    bit-exported; :func:`ebprop.packed.runtime.preprocessing_of` says why)."""
    try:
        prep = preprocessing_of(preprocessor)
    except ModelFormatError:
        return None
    return Pixels(prep["scaling"], int(prep["max_value"]), float(preprocessor.input_gain))


def input_pixels(X: torch.Tensor, pixels: tuple) -> torch.Tensor:
    """The integer pixels p (float64, X's shape) behind features X scaled as ``pixels``
    (:class:`Pixels`) says, checked to round-trip (ValueError, one line, otherwise)."""
    scaling, m, gain = Pixels(*pixels)
    x = X.to(torch.float64) / gain
    raw = (x + 1.0) * (m / 2.0) if scaling == "symmetric" else x * m
    p = torch.round(raw)
    if p.numel() and float((raw - p).abs().max()) > 1e-3:
        raise ValueError(
            f"features are not uint8 pixels scaled by {scaling!r} with max value {m} and input "
            f"gain {gain:g}; the sign network needs the model's own preprocessing"
        )
    return p


def unit_constants(bias: torch.Tensor | None, norm: nn.Module | None) -> dict[str, torch.Tensor]:
    """Float64 per-unit constants of a hidden layer's pre-activation: ``b`` (its bias) and, with
    batch normalisation, ``mean``, ``std`` (√(running var + ε)), ``gamma`` and ``beta``."""
    c: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        if bias is not None:
            c["b"] = bias.detach().to(torch.float64)
        if norm is not None:
            c["mean"] = norm.running_mean.detach().to(torch.float64)
            c["std"] = torch.sqrt(norm.running_var.detach().to(torch.float64) + norm.eps)
            c["gamma"] = norm.weight.detach().to(torch.float64)
            c["beta"] = norm.bias.detach().to(torch.float64)
    return c


def preactivation(
    s: torch.Tensor,
    alpha: float,
    c: dict,
    pixels: tuple | None = None,
    wsum: torch.Tensor | None = None,
) -> torch.Tensor:
    """y = BN(α·d + b) of a hidden layer from its integer dot product s (float64, units last).

    ``pixels`` (:class:`Pixels`) for a first layer on pixels, where s = Σ sign(W)_j p_j and the
    input dot product d is g·s/m (unit) or g·(2s − m·``wsum``)/m (symmetric); else d = s. Every
    step is one IEEE operation, monotone in s.
    """
    d = s
    if pixels is not None:
        scaling, m, gain = Pixels(*pixels)
        d = (s * 2.0 - wsum * float(m)) / float(m) if scaling == "symmetric" else s / float(m)
        d = d * gain  # exact at gain 1 (x·1.0 = x in IEEE): the network of before, bit for bit
    z = d * alpha
    if "b" in c:
        z = z + c["b"]
    if "gamma" in c:
        z = (z - c["mean"]) / c["std"] * c["gamma"] + c["beta"]
    return z


def smallest_firing(fires: Any, n: int, r: int) -> np.ndarray:
    """Per unit, the smallest integer t in [−r, r] with ``fires(t)`` (r + 1 if none), by
    bisection; ``fires`` maps an int64 tensor (n,) to bools (n,) and is increasing in t."""
    lo = torch.full((n,), -r, dtype=torch.int64)
    hi = torch.full((n,), r + 1, dtype=torch.int64)
    while bool((lo < hi).any()):
        mid = torch.div(lo + hi, 2, rounding_mode="floor")
        f = fires(mid)
        hi = torch.where((lo < hi) & f, mid, hi)
        lo = torch.where((lo < hi) & ~f, mid + 1, lo)
    return lo.numpy().astype(np.int64)


def threshold_biases(
    layer: int, T: np.ndarray, r: int, np_dtype: Any, pixels: tuple | None, ws: Any
) -> np.ndarray:
    """EBP-D biases whose packed thresholds (:mod:`ebprop.packed.pack`) are exactly T.

    ``pixels`` (:class:`Pixels`) on a first layer on pixels (``ws``: each stored row's Σ w),
    else None. ValueError naming ``layer`` when a threshold does not survive the conversion.
    """
    if pixels is not None:
        scaling, m, gain = Pixels(*pixels)
        b = -(T - 0.5) / m if scaling == "unit" else (m * ws - 2.0 * T + 1.0) / m
        b = (b * gain).astype(np_dtype)  # the unit fires iff g·d + b ≥ 0: b/g on d
        back = pack.pixel_thresholds(b, np.asarray(ws, dtype=np.int64), m, scaling, gain)
    else:
        b = (0.5 - T).astype(np_dtype)
        back = pack.hidden_thresholds(b)
    if not np.array_equal(pack.clip_thresholds(back, -r, r), T):
        raise ValueError(f"layer {layer}: folded thresholds do not survive as biases")
    return b


@dataclass
class FoldedNetwork:
    """A BinaryNet as an EBP-D network: ±1 weights and biases that give its exact decisions.

    Attributes
    ----------
    coefs : list of ndarray (n_in, n_out), ±1, rows of decreasing units negated
    intercepts : list of ndarray (n_out,) in ``dtype``: for hidden layers biases whose
        :func:`ebprop.packed.pack.hidden_thresholds` / ``pixel_thresholds`` are the folded T;
        for the output layer b/α in dot units
    thresholds : list of ndarray (n_out,) int64, T of every hidden layer (on the stored rows)
    flipped : list of ndarray (n_out,) bool, hidden units whose row was negated (γ < 0); in a
        conv network (:mod:`ebprop.baselines.binarynet_conv`), the units stored negated
    architecture : str or None, the hidden layers of a conv network (None: an MLP)
    input_shape : (height, width, channels) of a conv network, else None
    """

    coefs: list[np.ndarray]
    intercepts: list[np.ndarray]
    thresholds: list[np.ndarray]
    flipped: list[np.ndarray]
    architecture: str | None = None
    input_shape: tuple[int, int, int] | None = None


class BinaryNet(nn.Module):
    """Sign weights, sign activations, optional biases and batch normalisation.

    Parameters
    ----------
    n_in, n_out : int
        Input features and output units (one unit for two classes).
    hidden : sequence of int
        Hidden widths.
    batch_norm : bool
        Batch normalisation of every hidden pre-activation.
    bias : bool
        Biases in every layer.
    pixels : Pixels, (scaling, m) or None
        What the features are (:func:`pixel_input`); the test-time first layer uses it.
    input_keep, hidden_keep : float or None
        Dropout keep probabilities (training only).
    dtype : {"float32", "float64"}
        The model's dtype; the test-time output layer adds its biases in it, as EBP-D does.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        hidden: tuple[int, ...],
        *,
        batch_norm: bool = False,
        bias: bool = True,
        pixels: tuple | None = None,
        input_keep: float | None = None,
        hidden_keep: float | None = None,
        dtype: str = "float32",
    ) -> None:
        super().__init__()
        widths = [n_in, *hidden, n_out]
        self.widths = widths
        self.alphas = [1.0 / math.sqrt(a) for a in widths[:-1]]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(b, a)) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        for w in self.weights:  # Glorot-uniform shadow weights, inside [-1, 1]
            nn.init.xavier_uniform_(w)
        self.has_bias = bool(bias)
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(b)) for b in widths[1:] if self.has_bias
        )
        self.norms = nn.ModuleList(nn.BatchNorm1d(w) for w in widths[1:-1] if batch_norm)
        self.pixels = None if pixels is None else Pixels(*pixels)
        self.out_dtype = torch.float64 if dtype == "float64" else torch.float32
        self.input_drop = nn.Dropout(1.0 - (input_keep or 1.0))
        self.hidden_drop = nn.Dropout(1.0 - (hidden_keep or 1.0))

    # ------------------------------------------------------------------ training
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training logits (n, n_out) from features (n, n_in), with straight-through gradients."""
        h = self.input_drop(x)
        last = len(self.weights) - 1
        for i, w in enumerate(self.weights):
            z = F.linear(h, SignSTE.apply(w)) * self.alphas[i]
            if self.has_bias:
                z = z + self.biases[i]
            if i == last:
                return z
            if self.norms:
                z = self.norms[i](z)
            h = self.hidden_drop(SignSTE.apply(z))
        raise AssertionError("unreachable")

    def clip_inplace(self) -> None:
        """Clip the shadow weights to [-1, 1]."""
        with torch.no_grad():
            for w in self.weights:
                w.clamp_(-1.0, 1.0)

    def n_weights(self) -> int:
        """Entries of the weight matrices."""
        return sum(w.numel() for w in self.weights)

    def n_biases(self) -> int:
        """Biases of the layers (batch-norm parameters not counted)."""
        return sum(b.numel() for b in self.biases)

    # ------------------------------------------------------------------ test-time network
    def _constants(self, layer: int) -> dict[str, torch.Tensor]:
        """Float64 per-unit constants of a hidden layer (:func:`unit_constants`)."""
        return unit_constants(
            self.biases[layer] if self.has_bias else None,
            self.norms[layer] if self.norms else None,
        )

    def _preactivation(
        self, layer: int, s: torch.Tensor, c: dict, wsum: torch.Tensor | None
    ) -> torch.Tensor:
        """y of hidden ``layer`` from its integer dot product s (:func:`preactivation`)."""
        pixels = self.pixels if layer == 0 else None
        return preactivation(s, self.alphas[layer], c, pixels, wsum)

    def _input_pixels(self, X: torch.Tensor) -> torch.Tensor:
        """The integer pixels p (float64) behind features X (:func:`input_pixels`)."""
        return input_pixels(X, self.pixels)

    def output_bias(self) -> torch.Tensor:
        """Output biases in dot units, b/α, in the model's dtype (zeros without biases)."""
        n = self.widths[-1]
        with torch.no_grad():
            if not self.has_bias:
                return torch.zeros(n, dtype=self.out_dtype)
            b = self.biases[-1].detach().to(torch.float64) / self.alphas[-1]
            return b.to(self.out_dtype)

    def sign_outputs(self, X: torch.Tensor) -> torch.Tensor:
        """Output values (n, n_out) of the test-time sign network: s + b/α in the model dtype.

        Hidden units as in the module docstring (float64, exact integer dot products); the
        positive scale α of the output layer is dropped (argmax and sign unchanged).
        """
        W = [_sign(w.detach()) for w in self.weights]
        consts = [self._constants(i) for i in range(len(W) - 1)]
        wsum = W[0].sum(dim=1)
        bias = self.output_bias()
        out = torch.empty((X.shape[0], self.widths[-1]), dtype=self.out_dtype)
        with torch.no_grad():
            for start in range(0, X.shape[0], _CHUNK):
                x = X[start : start + _CHUNK]
                h = self._input_pixels(x) if self.pixels is not None else x.to(torch.float64)
                for i, w in enumerate(W[:-1]):
                    y = self._preactivation(i, h @ w.T, consts[i], wsum)
                    h = torch.where(y >= 0, 1.0, -1.0).to(torch.float64)
                out[start : start + _CHUNK] = (h @ W[-1].T).to(self.out_dtype) + bias
        return out

    def sign_predict(self, X: torch.Tensor) -> np.ndarray:
        """Class indices (n,) of the test-time sign network (:func:`output_classes`)."""
        return output_classes(self.sign_outputs(X).numpy())

    # ------------------------------------------------------------------ fold
    def _layer_range(self, layer: int) -> int:
        """Bound r with every dot product s of the layer in [-r, r]."""
        n = self.widths[layer]
        return n * self.pixels.max_value if layer == 0 and self.pixels is not None else n

    def fold(self) -> FoldedNetwork:
        """The exact EBP-D form of the test-time network (see the module docstring).

        Returns
        -------
        FoldedNetwork
            Its hidden decisions equal :meth:`sign_outputs`'s for every input; its output
            biases are :meth:`output_bias`.

        Raises
        ------
        ValueError
            With biases on float features (no pixels): the first layer's real dot product has
            no integer threshold; or if a threshold does not survive the conversion to biases.
        """
        np_dtype = np.float64 if self.out_dtype == torch.float64 else np.float32
        coefs, intercepts, thresholds, flipped = [], [], [], []
        for i, w in enumerate(self.weights[:-1]):
            if i == 0 and self.pixels is None:
                raise ValueError(
                    "fold needs pixel features (scaling unit or symmetric, no filters, no "
                    "deskew): the first layer of a model on float features has no integer "
                    "threshold"
                )
            W = _sign(w.detach())
            c = self._constants(i)
            wsum = W.sum(dim=1)
            # direction of each unit: the sign of its slope (γ with batch norm, else +1)
            flip = (c["gamma"] < 0) if "gamma" in c else torch.zeros(W.shape[0], dtype=bool)
            sgn = torch.where(flip, -1.0, 1.0).to(torch.float64)
            r = self._layer_range(i)

            def fires(t: torch.Tensor, i=i, c=c, wsum=wsum, sgn=sgn) -> torch.Tensor:
                # on the stored row (negated where flipped) the dot product is t = sgn·s
                return self._preactivation(i, sgn * t.to(torch.float64), c, wsum) >= 0

            T = smallest_firing(fires, W.shape[0], r)
            stored = (W * sgn[:, None]).numpy()  # (n_out, n_in)
            b = threshold_biases(
                i, T, r, np_dtype, self.pixels if i == 0 else None, stored.sum(axis=1)
            )
            coefs.append(np.ascontiguousarray(stored.T.astype(np_dtype)))
            intercepts.append(b)
            thresholds.append(T)
            flipped.append(flip.numpy().copy())
        coefs.append(
            np.ascontiguousarray(_sign(self.weights[-1].detach()).numpy().T.astype(np_dtype))
        )
        intercepts.append(self.output_bias().numpy().astype(np_dtype))
        return FoldedNetwork(coefs, intercepts, thresholds, flipped)


def folded_estimator(folded: FoldedNetwork, classes: np.ndarray, dtype: str) -> Any:
    """A fitted binary :class:`ebprop.EBPClassifier` whose EBP-D readout is the folded network.

    Only its ``readout="deterministic"`` predictions mean anything (EBP-P would read the ±1
    weights as posterior means).
    """
    params: dict[str, Any] = {"weights": "binary", "readout": "deterministic", "dtype": dtype}
    if folded.architecture is None:
        params["hidden_layer_sizes"] = [int(c.shape[1]) for c in folded.coefs[:-1]]
        return EBPClassifier.from_parameters(params, folded.coefs, folded.intercepts, classes)
    params |= {"architecture": folded.architecture, "input_shape": folded.input_shape}
    n_features = int(np.prod(folded.input_shape))
    return EBPClassifier.from_parameters(
        params, folded.coefs, folded.intercepts, classes, n_features=n_features
    )


def save_binarynet(path: Any, model: BinaryNet, data: Any, options: Any, record: dict) -> None:
    """Fold ``model`` and write it as an EBP model file (``method: binarynet``), atomically.

    Parameters
    ----------
    path : path of the ``.npz``
    model : BinaryNet, trained
    data : :class:`ebprop.runs.Features` of the run (classes, preprocessor, checksums)
    options : the run's BaselineOptions
    record : the epoch's metrics, stored as the model's ``metrics``
    """
    est = folded_estimator(model.fold(), data.classes, options.dtype)
    meta = {
        "method": "binarynet",
        "training_options": options.to_dict(),
        "checksums": data.checksums,
        "class_names": list(data.class_names),
        "input": data.appearance,  # how the training images looked, as EBP models record
        "metrics": {
            "epoch": record["epoch"],
            "val_error_d": record["val_error"],
            "test_error_d": record["test_error"],
        },
    }
    save_model(path, est, data.preprocessor, meta)
