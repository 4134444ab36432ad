"""Convolutional baselines (BP, BinaryConnect, BinaryNet) built from EBP's architecture string.

The same string EBP trains (``"16C5-MP2-32C5-MP2-128"``, :mod:`ebprop.core.architecture`)
builds the same layers here: a ``<n>C<k>[s<stride>][p<pad>]`` convolution with zero padding, a
k×k max-pool with stride k (a remainder that fills no window dropped), dense layers last on the
input flattened in (y, x, c) order, and the output layer from the classes. Inputs are feature
rows (n, H·W·C) in (y, x, c) order, as EBP's; inside torch they are NCHW.

Each weighted layer (conv or dense) and the max-pools that follow it form one block:

    z = α·(W ∗ h) + b → max-pool(s) → [batch norm] → activation → [dropout]

- ``bp``: real W, α = 1, ReLU or tanh;
- ``binaryconnect``: sign(W) in the forward pass, the gradient passed straight through to the
  real W, clipped to [-1, 1] after each step; α = 1/√fan-in; ReLU or tanh; batch
  normalisation after the output layer too (as :class:`ebprop.baselines.torch_mlp.MLP`);
- ``binarynet``: sign(W) as above (hard-tanh straight-through) and sign activations
  (:class:`ebprop.baselines.binarynet.SignSTE`); its test-time sign network and its fold into
  an EBP-D model are :mod:`ebprop.baselines.binarynet_conv`.

The pools come before batch normalisation and the activation, as in BinaryNet (Hubara et al.
2016) and BinaryConnect (Courbariaux et al. 2015): for ReLU, tanh and sign (all
non-decreasing) pooling after the activation would give the same values without batch
normalisation; batch normalisation (per channel for conv layers) sees the pooled map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ebprop.baselines.binarynet import SignSTE
from ebprop.core.architecture import (
    ConvSpec,
    DenseSpec,
    LayerSpec,
    PoolSpec,
    Shape,
    layer_shapes,
)

__all__ = ["ConvNet", "blocks"]


def blocks(specs: Sequence[LayerSpec]) -> list[tuple[ConvSpec | DenseSpec, tuple[int, ...]]]:
    """The weighted layers of ``specs``, each with the sizes of the max-pools that follow it.

    Raises
    ------
    ValueError
        One line naming the token when the first layer is a pool (it would pool pixels; EBP's
        networks start with a conv or dense layer).
    """
    out: list[tuple[ConvSpec | DenseSpec, tuple[int, ...]]] = []
    for spec in specs:
        if isinstance(spec, PoolSpec):
            if not out:
                raise ValueError(
                    f"architecture token {spec.token()!r} comes first; max-pool works on the "
                    "units of a layer, so start with a conv or dense layer"
                )
            layer, pools = out[-1]
            out[-1] = (layer, (*pools, spec.size))
        else:
            out.append((spec, ()))
    return out


class ConvNet(nn.Module):
    """A conv/pool/dense classifier of a baseline method (see the module docstring).

    Parameters
    ----------
    input_shape : (height, width, channels)
        How a feature row is laid out (the dataset's images).
    specs : sequence of layer specs
        The hidden layers (:func:`ebprop.core.architecture.parse_architecture`).
    n_out : int
        Output units.
    method : {"bp", "binaryconnect", "binarynet"}
    activation : {"relu", "tanh"}
        Hidden activation of bp and binaryconnect (binarynet: sign).
    batch_norm, bias : bool
        Batch normalisation of every hidden block; biases in every weighted layer.
    input_keep, hidden_keep : float or None
        Dropout keep probabilities (training only).

    Attributes
    ----------
    layers : ModuleList of ``nn.Conv2d`` / ``nn.Linear`` (their weights and biases; the forward
        pass is this class's)
    pools : list of tuples, the max-pool sizes after each weighted layer
    alphas : list of float, α of each weighted layer
    shapes : list of (H, W, C), each block's output shape, the output layer's last
    """

    def __init__(
        self,
        input_shape: Shape,
        specs: Sequence[LayerSpec],
        n_out: int,
        *,
        method: str,
        activation: str = "relu",
        batch_norm: bool = False,
        bias: bool = True,
        input_keep: float | None = None,
        hidden_keep: float | None = None,
    ) -> None:
        super().__init__()
        self.input_shape = tuple(int(d) for d in input_shape)
        self.specs = tuple(specs)
        all_specs = (*self.specs, DenseSpec(int(n_out)))
        shapes = layer_shapes(all_specs, self.input_shape)  # one-line errors naming the token
        self.method = method
        self.binary = method in ("binaryconnect", "binarynet")
        layers, self.pools, self.alphas, self.shapes = [], [], [], []
        shape, depth = self.input_shape, 0
        for spec, pools in blocks(all_specs):
            if isinstance(spec, ConvSpec):
                layer = nn.Conv2d(
                    shape[2], spec.channels, spec.kernel, spec.stride, spec.pad, bias=bias
                )
                fan_in = spec.kernel * spec.kernel * shape[2]
            else:
                fan_in = int(np.prod(shape))
                layer = nn.Linear(fan_in, spec.units, bias=bias)
            depth += 1 + len(pools)
            shape = shapes[depth - 1]
            layers.append(layer)
            self.pools.append(pools)
            self.alphas.append(1.0 / math.sqrt(fan_in) if self.binary else 1.0)
            self.shapes.append(shape)
        self.layers = nn.ModuleList(layers)
        hidden = list(zip(self.layers[:-1], self.shapes[:-1], strict=True))
        self.norms = nn.ModuleList(
            (nn.BatchNorm2d if isinstance(m, nn.Conv2d) else nn.BatchNorm1d)(s[2])
            for m, s in hidden
            if batch_norm
        )
        self.out_norm = (
            nn.BatchNorm1d(int(n_out)) if batch_norm and method == "binaryconnect" else None
        )
        if self.binary:  # Glorot-uniform shadow weights, inside [-1, 1]; biases 0
            for m in self.layers:
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.activation = {"relu": torch.relu, "tanh": torch.tanh}[activation]
        self.input_drop = nn.Dropout(1.0 - (input_keep or 1.0))
        self.hidden_drop = nn.Dropout(1.0 - (hidden_keep or 1.0))

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """Feature rows (n, H·W·C) in (y, x, c) order → NCHW (n, C, H, W)."""
        h, w, c = self.input_shape
        return x.reshape(x.shape[0], h, w, c).permute(0, 3, 1, 2)

    @staticmethod
    def flat(h: torch.Tensor) -> torch.Tensor:
        """NCHW → rows in (y, x, c) order, as EBP flattens before its first dense layer."""
        return h.permute(0, 2, 3, 1).reshape(h.shape[0], -1) if h.ndim == 4 else h

    def weighted(self, i: int, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """W ∗ h of weighted layer ``i`` (no α, no bias): a conv on NCHW, else a matrix product."""
        m = self.layers[i]
        if isinstance(m, nn.Conv2d):
            return F.conv2d(h, w, None, m.stride, m.padding)
        return F.linear(self.flat(h), w)

    def _weight(self, i: int) -> torch.Tensor:
        w = self.layers[i].weight
        if self.method == "binarynet":
            return SignSTE.apply(w)
        if self.method == "binaryconnect":  # value sign(w), gradient identity
            return w + (torch.where(w >= 0, 1.0, -1.0).to(w.dtype) - w).detach()
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training logits (n, n_out) from feature rows (n, H·W·C)."""
        h = self.images(self.input_drop(x))
        last = len(self.layers) - 1
        for i, m in enumerate(self.layers):
            z = self.weighted(i, h, self._weight(i))
            if self.alphas[i] != 1.0:
                z = z * self.alphas[i]
            if m.bias is not None:
                z = z + (m.bias[:, None, None] if z.ndim == 4 else m.bias)
            for k in self.pools[i]:
                z = F.max_pool2d(z, k)
            if i == last:
                return z if self.out_norm is None else self.out_norm(z)
            if self.norms:
                z = self.norms[i](z)
            z = SignSTE.apply(z) if self.method == "binarynet" else self.activation(z)
            h = self.hidden_drop(z)
        raise AssertionError("unreachable")

    def clip_inplace(self) -> None:
        """Binary methods: clip the shadow weights to [-1, 1] (no-op for backpropagation)."""
        if self.binary:
            with torch.no_grad():
                for m in self.layers:
                    m.weight.clamp_(-1.0, 1.0)

    def n_weights(self) -> int:
        """Entries of the weight tensors (biases and batch-norm parameters not counted)."""
        return sum(m.weight.numel() for m in self.layers)

    def n_biases(self) -> int:
        """Biases of the weighted layers."""
        return sum(m.bias.numel() for m in self.layers if m.bias is not None)

    def predict_indices(self, X: torch.Tensor) -> np.ndarray:
        """Class indices (n,) in eval mode: the argmax, or for one output unit 1 where ≥ 0."""
        self.eval()
        with torch.no_grad():
            out = self(X)
        if out.shape[1] == 1:
            return (out[:, 0] >= 0).long().numpy()
        return out.argmax(dim=1).numpy()
