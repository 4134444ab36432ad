"""The two readouts.

EBP-P (probabilistic): the output means ⟨v_L⟩ of the forward pass.
EBP-D (deterministic): the single most probable network — W = sign(H) for binary weights
(sign(0) = +1), W = M for real weights — real biases kept, hidden units sign(W v + b) with
sign(0) = +1, and a linear output layer. Both classify by argmax over output units.
"""

from __future__ import annotations

import numpy as np

from .architecture import ConvSpec, PoolSpec
from .conv import im2col
from .convnet import ConvNetwork, conv_forward
from .forward import forward
from .network import Network
from .numerics import log_cdf, sign_units_inplace
from .pool import maxpool_deterministic


def predict_probabilistic(net: Network | ConvNetwork, x: np.ndarray) -> np.ndarray:
    """⟨v_L⟩, shape (batch, n_L), in (−1, 1)."""
    if isinstance(net, ConvNetwork):
        return conv_forward(net, x)[-1].v
    return forward(net, x)[-1].v


def output_z(net: Network | ConvNetwork, x: np.ndarray) -> np.ndarray:
    """z_L = μ_L/σ_L, shape (batch, n_L): P(v_L,k = +1) = Φ(z_k)."""
    if isinstance(net, ConvNetwork):
        return conv_forward(net, x)[-1].stats.z
    return forward(net, x)[-1].z


def predict_deterministic(
    net: Network | ConvNetwork,
    x: np.ndarray,
    weights: list[np.ndarray] | None = None,
    biases: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Linear outputs W_L h_{L−1} + b_L of the most probable network, shape (batch, n_L).

    ``weights`` may hold precomputed most-probable weights (one (n_in, n_out) array per layer);
    ``biases`` replaces ``net.b`` (e.g. thresholds refitted by :mod:`.refit`).
    """
    if weights is None:
        weights = [net.family.most_probable(h) for h in net.H]
    if biases is None:
        biases = net.b
    if isinstance(net, ConvNetwork):
        return _deterministic_conv(net, x, weights, biases)
    h = x
    for W, b in zip(weights[:-1], biases[:-1], strict=True):
        pre = h @ W
        pre += b
        h = sign_units_inplace(pre)
    return h @ weights[-1] + biases[-1]


def _deterministic_conv(
    net: ConvNetwork, x: np.ndarray, weights: list[np.ndarray], biases: list[np.ndarray]
) -> np.ndarray:
    """EBP-D of a conv network (CONV_SPEC.md): padded taps add 0, pools are an OR of ±1 bits."""
    h = x.reshape((x.shape[0],) + tuple(net.input_shape))
    index, last = 0, len(weights) - 1
    for spec, shape in zip(net.specs, net.shapes, strict=True):
        if isinstance(spec, PoolSpec):
            h = maxpool_deterministic(h, spec.size)
            continue
        if isinstance(spec, ConvSpec):
            pre = im2col(h, spec.kernel, spec.stride, spec.pad) @ weights[index]
        else:
            pre = h.reshape(h.shape[0], -1) @ weights[index]
        pre += biases[index]
        if index == last:
            return pre
        h = sign_units_inplace(pre)
        if isinstance(spec, ConvSpec):
            h = h.reshape((x.shape[0],) + shape)
        index += 1
    raise ValueError("a conv network must end with a dense output layer")


def class_log_probabilities(z: np.ndarray) -> np.ndarray:
    """Class log-probabilities from output z-scores.

    One unit (binary task): log P(class 1) = log Φ(z), log P(class 0) = log Φ(−z); returns
    (batch, 2). K ≥ 2 units: the factorised output posterior P(v_k = +1) = Φ(z_k) is conditioned
    on the event the training targets encode — exactly one unit is +1 — which gives
    P(k) ∝ Φ(z_k) Π_{j≠k} Φ(−z_j) ∝ Φ(z_k)/Φ(−z_k), a softmax of log Φ(z_k) − log Φ(−z_k).
    The ranking equals that of ⟨v_k⟩ = 2Φ(z_k) − 1, so argmax agrees with EBP-P.
    """
    if z.shape[1] == 1:
        return np.concatenate([log_cdf(-z), log_cdf(z)], axis=1)
    logits = log_cdf(z) - log_cdf(-z)
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
