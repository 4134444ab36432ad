"""A network of conv, max-pool and dense layers, and its EBP step: forward → backward → update.

The dense-only path (:mod:`.step`, :class:`.network.Network`) is untouched; this module composes
the same per-layer formulas for architectures with conv/pool layers (:mod:`.conv`, :mod:`.pool`).

Every parameterised layer (conv or dense) is written as one matrix product over its *input rows*
``A``: for a dense layer ``A`` is the flattened input (batch, n_in); for a conv layer it is the
im2col patches (batch·P, k·k·C_in) with P output positions. Then, as for dense layers,

    z = (A M + b)/√(σ²c),  Δ = g · 2φ(z)/√(σ²c),  H ← ρ H + t·½ Aᵀ Δ,  b += t·½ Σ Δ

where g is the gradient arriving from above (Δ_{l+1} M_{l+1}ᵀ, through col2im and pooling) and
t = P^(−γ) is an optional per-layer tempering of the position-summed conv update (γ = 0: the
plain sum, the default).

An optional rule for conv biases, off by default (``ConvNetwork.bias_precision``): a conv bias is
a real parameter with a fixed unit variance shared by all P output positions, so the plain rule
moves it by the sum of B·P terms per minibatch (5,760 on a 24×24 MNIST map at batch 10) where a
dense bias gets B; unlike a binary weight it never saturates. With ``bias_precision`` set, each
conv bias instead carries a precision τ (1 at the start) that accumulates the evidence of its
terms, τ += Σ (½Δ)², and moves by b += ½ Σ Δ / τ: the Gaussian posterior of a parameter tied
across positions, with the empirical Fisher information of each term as its message precision
(benchmarks/conv_bias.py measures it; docs/conv.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .architecture import ConvSpec, DenseSpec, LayerSpec, PoolSpec, Shape, layer_shapes
from .backward import output_delta
from .conv import col2im, hidden_conv_variance_sum, im2col, padded_taps
from .families import WeightFamily
from .forward import LayerStats, layer_forward
from .network import aligned_empty
from .numerics import flush_subnormals_inplace, normal_pdf
from .overshoot import overshoot_gain
from .pool import maxpool_backward, maxpool_forward
from .update import PARAMETER_BOUND


@dataclass
class ConvNetwork:
    """Posterior parameters of an EBP network with conv/pool layers.

    Attributes
    ----------
    family : WeightFamily
    specs : tuple of layer specs
        All layers, the output layer included (a final :class:`DenseSpec`).
    input_shape : (height, width, channels)
    H, b : lists over the parameterised layers (conv and dense, in order)
        Conv: H (k·k·C_in, C_out) with rows (ky, kx, c_in); dense: (n_in, n_out). b (n_out,).
    M, M2 : cached ⟨W⟩ and ⟨W⟩², derived from H.
    temper : float
        γ ≥ 0: a conv layer's update is divided by P^γ (P its output positions); 0 = plain sum.
    bias_precision : list or None
        None (the default): conv biases take the plain summed step. A list with one float64
        array (C_out,) per parameterised layer, ones to start: conv biases take the
        precision-weighted step of the module docstring (dense layers' entries are unused).
    """

    family: WeightFamily
    specs: tuple[LayerSpec, ...]
    input_shape: Shape
    H: list[np.ndarray]
    b: list[np.ndarray]
    temper: float = 0.0
    bias_precision: list[np.ndarray] | None = None
    M: list[np.ndarray] = field(default_factory=list)
    M2: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.shapes = layer_shapes(self.specs, self.input_shape)
        expected = parameter_shapes(self.specs, self.input_shape)
        got = [(h.shape, bb.shape) for h, bb in zip(self.H, self.b, strict=False)]
        if (
            len(self.H) != len(expected)
            or len(self.b) != len(expected)
            or got != [(s, (s[1],)) for s in expected]
        ):
            raise ValueError(f"conv network parameters {got} do not match the layers {expected}")
        if isinstance(self.specs[0], PoolSpec):
            raise ValueError(
                f"architecture token {self.specs[0].token()!r} comes first; max-pool works on "
                "±1 units, so start with a conv or dense layer"
            )
        if not self.M:
            self.M = [self.family.means(h) for h in self.H]
            self.M2 = [m * m for m in self.M]

    @property
    def dtype(self) -> np.dtype:
        return self.H[0].dtype

    def refresh_moments_inplace(self, index: int) -> None:
        """Recompute M and M² of parameterised layer ``index`` from H."""
        self.family.means(self.H[index], out=self.M[index])
        np.multiply(self.M[index], self.M[index], out=self.M2[index])


def parameter_shapes(specs: Sequence[LayerSpec], input_shape: Shape) -> list[tuple[int, int]]:
    """(rows, columns) of H for every parameterised layer of ``specs`` on ``input_shape``."""
    shapes, shape = [], tuple(input_shape)
    for spec, out in zip(specs, layer_shapes(specs, input_shape), strict=True):
        if isinstance(spec, ConvSpec):
            shapes.append((spec.kernel * spec.kernel * shape[2], spec.channels))
        elif isinstance(spec, DenseSpec):
            shapes.append((shape[0] * shape[1] * shape[2], spec.units))
        shape = out
    return shapes


def init_conv_network(
    specs: Sequence[LayerSpec],
    input_shape: Shape,
    family: WeightFamily,
    rng: np.random.Generator,
    init_variance: float = 1.0,
    dtype: np.dtype | type = np.float32,
    temper: float = 0.0,
) -> ConvNetwork:
    """H uniform with variance ``init_variance / n_in`` (n_in = k·k·C_in for a conv), biases 0.

    ``specs`` lists every layer, the output layer last (a :class:`DenseSpec`).
    """
    H, b = [], []
    for n_in, n_out in parameter_shapes(specs, input_shape):
        half_width = np.sqrt(3.0) * np.sqrt(init_variance / n_in)
        if not half_width < np.finfo(dtype).max:
            raise ValueError(f"init_variance={init_variance:g} is too large for {dtype}")
        h = aligned_empty((n_in, n_out), dtype)
        h[...] = rng.uniform(-half_width, half_width, size=(n_in, n_out))
        H.append(h)
        b.append(np.zeros(n_out, dtype=dtype))
    return ConvNetwork(
        family=family, specs=tuple(specs), input_shape=tuple(input_shape), H=H, b=b, temper=temper
    )


@dataclass
class ConvLayerStats:
    """Forward statistics of one layer of a :class:`ConvNetwork`.

    ``v`` is the layer's output means in its own shape: (batch, h, w, C) for conv/pool layers,
    (batch, n) for dense ones. Parameterised layers also keep ``stats`` (z and √(σ²c) over the
    input rows, each (rows, C_out)) and ``rows`` (the input rows A). Pools keep ``q``.
    """

    v: np.ndarray
    stats: LayerStats | None = None
    rows: np.ndarray | None = None
    q: np.ndarray | None = None


def _input_rows(spec: LayerSpec, v: np.ndarray) -> np.ndarray:
    if isinstance(spec, ConvSpec):
        return im2col(v, spec.kernel, spec.stride, spec.pad)
    return v.reshape(v.shape[0], -1)  # (y, x, c) row-major flatten (CONV_SPEC.md)


#: A function with the signature and result of :func:`.forward.layer_forward`.
LayerForward = Callable[..., LayerStats]


def conv_forward(
    net: ConvNetwork, x: np.ndarray, nu: float = 0.0, layer_stats: LayerForward = layer_forward
) -> list[ConvLayerStats]:
    """The probabilistic forward pass.

    Parameters
    ----------
    x : ndarray (batch, H·W·C) or (batch, H, W, C)
        Real inputs in ``net.dtype``, flattened in (y, x, c) order.
    nu : input-dropout factor ν of the first layer (0 = off).
    layer_stats : what turns a layer's summed variance into its statistics; the NumPy
        :func:`.forward.layer_forward` (the definition), or a compiled equivalent
        (``ebprop.kernels.conv_layer_forward``, which the trainer hands in where it runs).
    """
    family = net.family
    v = x.reshape((x.shape[0],) + tuple(net.input_shape))
    out: list[ConvLayerStats] = []
    index = 0
    for depth, (spec, shape) in enumerate(zip(net.specs, net.shapes, strict=True)):
        if isinstance(spec, PoolSpec):
            v_out, q = maxpool_forward(v, spec.size)
            out.append(ConvLayerStats(v=v_out, q=q))
            v = v_out
            continue
        rows = _input_rows(spec, v)
        M, M2 = net.M[index], net.M2[index]
        if depth == 0:  # real inputs: σ²c − 1 = α Σ x² + β x² @ M² (padded taps are 0 anyway)
            alpha, beta = family.first_layer_coefficients(nu)
            x2 = rows * rows
            x2_sum = x2.sum(axis=1, keepdims=True)
            if beta != 0.0:
                var_sum = x2 @ M2
                var_sum *= rows.dtype.type(beta)
                var_sum += rows.dtype.type(alpha) * x2_sum
            else:
                var_sum = np.repeat(rows.dtype.type(alpha) * x2_sum, M.shape[1], axis=1)
        elif isinstance(spec, ConvSpec):
            padding = padded_taps(
                v.shape[1:3], v.shape[3], spec.kernel, spec.stride, spec.pad, v.dtype
            )
            var_sum = hidden_conv_variance_sum(family, rows, M2, padding)
        else:
            var_sum = family.hidden_variance_sum(rows, M2)
        stats = layer_stats(rows, M, M2, net.b[index], var_sum)
        v = stats.v.reshape((x.shape[0],) + shape) if isinstance(spec, ConvSpec) else stats.v
        out.append(ConvLayerStats(v=v, stats=stats, rows=rows))
        index += 1
    return out


def conv_backward(
    net: ConvNetwork, layers: list[ConvLayerStats], y: np.ndarray, gain: float = 1.0
) -> list[np.ndarray]:
    """Δ of every parameterised layer, each (rows, C_out), output last; pre-update means.

    ``gain`` γ scales Δ_L before the recursion, as :func:`.backward.backward`'s (the overshoot
    control of :mod:`.overshoot`); γ = 1 multiplies nothing.
    """
    deltas: list[np.ndarray] = [output_delta(y, layers[-1].stats)]
    if gain != 1.0:
        deltas[0] *= deltas[0].dtype.type(gain)
        flush_subnormals_inplace(deltas[0])
    index = len(net.H) - 1
    grad = None  # gradient w.r.t. the current layer's output means, in its output shape
    for depth in range(len(net.specs) - 1, 0, -1):
        spec, below = net.specs[depth], layers[depth - 1]
        if isinstance(spec, PoolSpec):
            grad = maxpool_backward(grad, layers[depth].q, below.v.shape, spec.size)
        else:
            g_rows = deltas[-1] @ net.M[index].T  # ∂/∂A: (rows, n_in)
            if isinstance(spec, ConvSpec):
                grad = col2im(g_rows, below.v.shape, spec.kernel, spec.stride, spec.pad)
            else:
                grad = g_rows.reshape(below.v.shape)
            index -= 1
        if below.stats is not None:  # a parameterised layer: Δ = g · 2φ(z)/√(σ²c)
            st = below.stats
            delta = grad.reshape(st.z.shape)
            delta *= 2.0 * normal_pdf(st.z) / st.scale
            # As the dense hidden Δ (backward.hidden_delta): saturated units give subnormal
            # Δ, and every product that reads one takes a microcode assist.
            deltas.append(flush_subnormals_inplace(delta))
    deltas.reverse()
    return deltas


def conv_update_inplace(
    net: ConvNetwork,
    layers: list[ConvLayerStats],
    deltas: list[np.ndarray],
    rho: Sequence[float] | None = None,
) -> None:
    """H ← ρ H + t·½ Aᵀ Δ and b += t·½ Σ Δ per parameterised layer; moments refreshed.

    ``rho``: one factor per parameterised layer, or None. t = P^(−temper) for conv layers with P
    output positions, 1 for dense layers.
    """
    params = [(s, layer) for s, layer in zip(net.specs, layers, strict=True) if layer.stats]
    if rho is not None and len(rho) != len(params):
        raise ValueError(f"rho has {len(rho)} factors for {len(params)} layers")
    for index, ((spec, layer), delta) in enumerate(zip(params, deltas, strict=True)):
        half = 0.5
        if isinstance(spec, ConvSpec) and net.temper:
            positions = delta.shape[0] // layers[-1].v.shape[0]
            half = 0.5 / positions**net.temper
        # The factor scales the small (n_in, n_out) product, not Δ's batch·P rows (for ½ the same
        # bits: a power of two commutes with rounding).
        half = delta.dtype.type(half)
        H, b = net.H[index], net.b[index]
        if isinstance(spec, ConvSpec) and net.bias_precision is not None:
            tau = net.bias_precision[index]
            tau += np.square(0.5 * delta, dtype=np.float64).sum(axis=0)
            b += (delta.sum(axis=0, dtype=np.float64) * float(half) / tau).astype(b.dtype)
        else:
            b += delta.sum(axis=0) * half
        np.clip(b, -PARAMETER_BOUND, PARAMETER_BOUND, out=b)
        if rho is not None and float(rho[index]) != 1.0:
            H *= H.dtype.type(rho[index])
        increment = layer.rows.T @ delta
        increment *= half
        H += increment
        np.clip(H, -PARAMETER_BOUND, PARAMETER_BOUND, out=H)
        net.refresh_moments_inplace(index)


def conv_step_inplace(
    net: ConvNetwork,
    x: np.ndarray,
    y: np.ndarray,
    nu: float = 0.0,
    rho: Sequence[float] | None = None,
    layer_stats: LayerForward = layer_forward,
) -> np.ndarray:
    """Train ``net`` on one minibatch in place; returns the pre-update EBP-P output ⟨v_L⟩.

    x : (batch, H·W·C) inputs; y : (batch, n_L) targets of ±1; as :func:`.step.step_inplace`.
    ``layer_stats``: as :func:`conv_forward`'s.
    """
    layers = conv_forward(net, x, nu, layer_stats)
    deltas = conv_backward(net, layers, y, conv_overshoot_gain(net, layers, y))
    conv_update_inplace(net, layers, deltas, rho)
    return layers[-1].v


@dataclass
class _Flat:
    v: np.ndarray


def conv_overshoot_gain(net: ConvNetwork, layers: list[ConvLayerStats], y: np.ndarray) -> float:
    """The overshoot gain γ of :func:`.overshoot.overshoot_gain` for a conv network's minibatch.

    Only the (always dense) output layer is measured, on its flattened input means, exactly as
    for a dense network: a conv network whose last hidden layer is a dense one gets the dense
    network's γ.
    """
    below = _Flat(layers[-2].v.reshape(layers[-2].v.shape[0], -1))
    return overshoot_gain(net, below.v, y, [below, layers[-1].stats])  # type: ignore[list-item]


def conv_diverged(net: ConvNetwork, rho: Sequence[float] | None = None) -> bool:
    """As :func:`.update.diverged`, for a :class:`ConvNetwork`."""
    binary = net.family.name == "binary"
    for index, (h, b) in enumerate(zip(net.H, net.b, strict=True)):
        saturating = binary and rho is not None and rho[index] > 1.0
        checked = (b,) if saturating else (h, b)
        if any(p.size and np.abs(p).max() >= PARAMETER_BOUND for p in checked):
            return True
    return False
