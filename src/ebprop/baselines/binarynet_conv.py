"""A convolutional BinaryNet: its test-time sign network and its exact fold into an EBP-D CNN.

The training network is :class:`ebprop.baselines.convnet.ConvNet` with ``method="binarynet"``:
each block is z = α·(sign(W) ∗ h) + b → max-pool(s) → [batch norm, per channel] → sign.

**Test-time network** (:meth:`BinaryConvNet.sign_outputs`), as for the MLP
(:mod:`ebprop.baselines.binarynet`): float64, every convolution or dot product an exact
integer s (on uint8 pixels the first layer convolves the integer pixels p, its real input being
s/m with ``unit`` scaling, or (2s − m·Σw)/m with ``symmetric`` scaling, Σw the unit's weight sum,
when the first conv has no padding); each block max-pools the integers s, then evaluates
y = BN(α·d + b) (:func:`ebprop.baselines.binarynet.preactivation`) and takes sign(y), +1 at 0.
The output layer is s + b/α in the model's dtype.

**Fold.** α > 0 and b is one constant per channel, so pooling the integers s before them is
pooling z. y is a chain of IEEE operations each monotone in s, so a unit fires exactly on
{max s ≥ T} (γ ≥ 0, non-decreasing) or {max s ≤ T'} (γ < 0). In EBP-D's conv form (sign
weights, sign units, integer thresholds, max-pool as an OR of ±1 units,
:mod:`ebprop.packed.conv`):

- γ ≥ 0: the unit s ≥ T, then the OR over the pool window: +1 iff max s ≥ T. Exact.
- γ < 0: the OR of "fires" units would be wrong (an OR of {s ≤ T'} is {min s ≤ T'}). The unit is
  stored *negated* instead, as s ≥ T' + 1 (it fires where the BinaryNet unit does not); its OR
  is +1 iff max s ≥ T' + 1, the exact negation of the BinaryNet unit. The next layer's weights
  on that channel (every tap; a padded tap is 0 either way) or, after flattening, on its every
  position, are negated, so that layer's integer sums equal BinaryNet's exactly.

The same negation handles the dense layers (whose units have no pool) and, on the last hidden
layer, the output layer's weights. Each T is found by bisection on the very function the
test-time network evaluates, so the folded network's decisions, and its output values, equal the
test-time network's for every input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ebprop.baselines.binarynet import (
    FoldedNetwork,
    Pixels,
    input_pixels,
    output_classes,
    preactivation,
    smallest_firing,
    threshold_biases,
    unit_constants,
)
from ebprop.baselines.convnet import ConvNet
from ebprop.core.architecture import Shape, format_architecture

__all__ = ["BinaryConvNet"]

_CHUNK = 1024


def _sign64(w: torch.Tensor) -> torch.Tensor:
    return torch.where(w >= 0, 1.0, -1.0).to(torch.float64)


class BinaryConvNet(ConvNet):
    """BinaryNet on an architecture with conv layers (see the module docstring).

    Parameters
    ----------
    input_shape, specs, n_out, batch_norm, bias, input_keep, hidden_keep
        As :class:`ebprop.baselines.convnet.ConvNet` (``n_out``: one unit for two classes).
    pixels : Pixels, (scaling, m) or None
        :func:`ebprop.baselines.binarynet.pixel_input` when the features are uint8 pixels with
        ``unit`` scaling (a zero-padded tap is then a black pixel), or ``symmetric`` scaling and
        an unpadded first conv (as :func:`ebprop.packed.conv.scaling_problem` exports); else
        None: the test-time first layer then convolves the float features, and the model
        cannot be folded.
    dtype : {"float32", "float64"}
        The model's dtype; the test-time output layer adds its biases in it, as EBP-D does.
    """

    def __init__(
        self,
        input_shape: Shape,
        specs: Any,
        n_out: int,
        *,
        batch_norm: bool = False,
        bias: bool = True,
        pixels: tuple | None = None,
        input_keep: float | None = None,
        hidden_keep: float | None = None,
        dtype: str = "float32",
    ) -> None:
        super().__init__(
            input_shape,
            specs,
            n_out,
            method="binarynet",
            batch_norm=batch_norm,
            bias=bias,
            input_keep=input_keep,
            hidden_keep=hidden_keep,
        )
        # symmetric pixels x = 2p/m − 1: exact only where no tap is padded (x = 0 is no pixel)
        pixels = None if pixels is None else Pixels(*pixels)
        exact = pixels is not None and (pixels.scaling == "unit" or self.specs[0].pad == 0)
        self.pixels = pixels if exact else None
        self.out_dtype = torch.float64 if dtype == "float64" else torch.float32

    # ------------------------------------------------------------------ test-time network
    def _constants(self, i: int) -> dict[str, torch.Tensor]:
        return unit_constants(self.layers[i].bias, self.norms[i] if self.norms else None)

    def _first_input(self, x: torch.Tensor) -> torch.Tensor:
        """The integer pixels p (float64, NCHW) behind features x, checked to round-trip; the
        float64 features themselves when the model is not on pixels."""
        if self.pixels is None:
            return self.images(x.to(torch.float64))
        return self.images(input_pixels(x, self.pixels))

    def _wsum(self) -> torch.Tensor:
        """Σ sign(W) of each first-layer unit over its k·k·C_in taps (float64, (C_out,))."""
        return _sign64(self.layers[0].weight.detach()).sum(dim=(1, 2, 3))

    def _block_sums(self, i: int, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Max-pooled integer sums of weighted layer ``i``, units last: (n, H, W, C) or (n, C)."""
        s = self.weighted(i, h, w)
        for k in self.pools[i]:
            s = F.max_pool2d(s, k)
        return s.permute(0, 2, 3, 1) if s.ndim == 4 else s

    def output_bias(self) -> torch.Tensor:
        """Output biases in dot units, b/α, in the model's dtype (zeros without biases)."""
        m = self.layers[-1]
        with torch.no_grad():
            if m.bias is None:
                return torch.zeros(m.out_features, dtype=self.out_dtype)
            return (m.bias.detach().to(torch.float64) / self.alphas[-1]).to(self.out_dtype)

    def sign_outputs(self, X: torch.Tensor) -> torch.Tensor:
        """Output values (n, n_out) of the test-time sign network: s + b/α in the model dtype."""
        W = [_sign64(m.weight.detach()) for m in self.layers]
        consts = [self._constants(i) for i in range(len(W) - 1)]
        bias = self.output_bias()
        wsum = self._wsum()
        out = torch.empty((X.shape[0], W[-1].shape[0]), dtype=self.out_dtype)
        with torch.no_grad():
            for start in range(0, X.shape[0], _CHUNK):
                h = self._first_input(X[start : start + _CHUNK])
                for i in range(len(W) - 1):
                    pixels = self.pixels if i == 0 else None
                    s = self._block_sums(i, h, W[i])
                    y = preactivation(s, self.alphas[i], consts[i], pixels, wsum)
                    h = torch.where(y >= 0, 1.0, -1.0).to(torch.float64)
                    h = h.permute(0, 3, 1, 2) if h.ndim == 4 else h
                s = self.weighted(len(W) - 1, h, W[-1])
                out[start : start + _CHUNK] = s.to(self.out_dtype) + bias
        return out

    def sign_predict(self, X: torch.Tensor) -> np.ndarray:
        """Class indices (n,) of the test-time sign network (:func:`output_classes`)."""
        return output_classes(self.sign_outputs(X).numpy())

    # ------------------------------------------------------------------ fold
    def _stored(self, i: int, negated: np.ndarray | None) -> np.ndarray:
        """sign(W) of weighted layer ``i`` as EBP's H (rows, C_out), the rows of negated inputs
        negated. Conv rows are (ky, kx, c_in); dense rows the (y, x, c) flattened input."""
        m = self.layers[i]
        W = _sign64(m.weight.detach()).numpy()
        if isinstance(m, nn.Conv2d):
            stored = W.transpose(2, 3, 1, 0).reshape(-1, W.shape[0])  # (ky, kx, c_in) rows
        else:
            stored = W.T.copy()
        if negated is not None:  # per input channel (conv, or dense after conv) or unit
            stored[np.resize(negated, stored.shape[0])] *= -1.0
        return stored

    def fold(self) -> FoldedNetwork:
        """The exact EBP-D CNN of the test-time network (see the module docstring).

        Returns
        -------
        FoldedNetwork
            ``coefs`` in EBP's conv layout, ``thresholds`` on the stored units, ``flipped`` the
            units stored negated, ``architecture`` and ``input_shape`` of the network.

        Raises
        ------
        ValueError
            When the model is not on uint8 pixels with ``unit`` scaling, or ``symmetric`` scaling
            and an unpadded first conv (no integer first layer, or a zero-padded tap that is no
            pixel), or a threshold does not survive as a bias.
        """
        if self.pixels is None:
            raise ValueError(
                "fold needs pixel features scaled unit, or symmetric with an unpadded first conv "
                "(no filters, no deskew): a conv BinaryNet on other features has no integer first "
                "layer to export"
            )
        np_dtype = np.float64 if self.out_dtype == torch.float64 else np.float32
        coefs, intercepts, thresholds, flipped = [], [], [], []
        negated = None
        wsum = self._wsum()  # the first layer's; its inputs are pixels, never negated
        for i in range(len(self.layers) - 1):
            stored = self._stored(i, negated)
            c = self._constants(i)
            pixels = self.pixels if i == 0 else None
            n_out = stored.shape[1]
            dec = (c["gamma"] < 0) if "gamma" in c else torch.zeros(n_out, dtype=torch.bool)
            r = stored.shape[0] * (self.pixels.max_value if i == 0 else 1)

            def grows(t: torch.Tensor, i=i, c=c, pixels=pixels, dec=dec) -> torch.Tensor:
                # fires on the stored unit: BinaryNet's unit, negated where it decreases in s
                y = preactivation(t.to(torch.float64), self.alphas[i], c, pixels, wsum)
                return (y >= 0) ^ dec

            T = smallest_firing(grows, n_out, r)
            b = threshold_biases(i, T, r, np_dtype, pixels, stored.sum(axis=0))
            coefs.append(np.ascontiguousarray(stored.astype(np_dtype)))
            intercepts.append(b)
            thresholds.append(T)
            negated = dec.numpy().copy()
            flipped.append(negated)
        coefs.append(np.ascontiguousarray(self._stored(len(self.layers) - 1, negated), np_dtype))
        intercepts.append(self.output_bias().numpy().astype(np_dtype))
        return FoldedNetwork(
            coefs,
            intercepts,
            thresholds,
            flipped,
            architecture=format_architecture(self.specs),
            input_shape=self.input_shape,
        )
