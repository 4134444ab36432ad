"""The two readouts.

EBP-P (probabilistic): the output means ⟨v_L⟩ of the forward pass.
EBP-D (deterministic): the single most probable network — W = sign(H) for binary weights
(sign(0) = +1), W = M for real weights — real biases kept, hidden units sign(W v + b) with
sign(0) = +1, and a linear output layer. Both classify by argmax over output units.
"""

from __future__ import annotations

import numpy as np

from .forward import forward
from .network import Network
from .numerics import log_cdf


def predict_probabilistic(net: Network, x: np.ndarray) -> np.ndarray:
    """⟨v_L⟩, shape (batch, n_L), in (−1, 1)."""
    return forward(net, x)[-1].v


def output_z(net: Network, x: np.ndarray) -> np.ndarray:
    """z_L = μ_L/σ_L, shape (batch, n_L): P(v_L,k = +1) = Φ(z_k)."""
    return forward(net, x)[-1].z


def predict_deterministic(
    net: Network,
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
    h = x
    for W, b in zip(weights[:-1], biases[:-1], strict=True):
        pre = h @ W
        pre += b
        h = np.where(pre >= 0, 1, -1).astype(x.dtype)  # sign with sign(0) = +1
    return h @ weights[-1] + biases[-1]


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
