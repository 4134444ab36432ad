"""The backward pass: the Δ recursion of Expectation Backpropagation.

With z = μ/σ and y ∈ {−1, +1} (one-hot as ±1 for multiclass):

    output:  Δ_L = y · 2 φ(z)/(σ Φ(y z)) / √c_L
    hidden:  Δ_l = (M_{l+1}ᵀ Δ_{l+1}) · 2 φ(z_l)/(σ_l √c_l)

½ Δ_l ⟨v_{l−1}⟩ᵀ is then the gradient of Σ_k log Φ(y_k z_{L,k}) with respect to M_l, σ held fixed.
The means M used here are those from before this minibatch's update.
"""

from __future__ import annotations

import numpy as np

from .forward import LayerStats
from .network import Network
from .numerics import flush_subnormals_inplace, normal_pdf, pdf_over_cdf


def output_delta(y: np.ndarray, stats: LayerStats) -> np.ndarray:
    """Δ_L, shape (batch, n_L), for targets ``y`` of ±1 of the same shape.

    φ(z)/Φ(yz) = φ(yz)/Φ(yz) is evaluated with a stable Mills ratio, so a confidently wrong
    output (y z → −∞) gets Δ ≈ −2 y z/(σ√c) rather than NaN — for y = −1 as for y = +1.
    (The authors' code used an ad-hoc fallback here that had the wrong sign for y = −1.)
    """
    # Subnormal Δ are flushed to 0 here and after every scaling (numerics.flush_subnormals_inplace:
    # the authors' code has no such step; it only removes values below the normal range).
    return flush_subnormals_inplace((2.0 * y) * pdf_over_cdf(y * stats.z) / stats.scale)


def hidden_delta(upstream: np.ndarray, M_next: np.ndarray, stats: LayerStats) -> np.ndarray:
    """Δ_l, shape (batch, n_l), from Δ_{l+1} (batch, n_{l+1}) and M_{l+1} (n_l, n_{l+1})."""
    delta = upstream @ M_next.T
    delta *= 2.0 * normal_pdf(stats.z) / stats.scale
    return flush_subnormals_inplace(delta)


def backward(
    net: Network, stats: list[LayerStats], y: np.ndarray, gain: float = 1.0
) -> list[np.ndarray]:
    """All Δ_l, output last, each (batch, n_l), using the pre-update means ``net.M``.

    ``gain`` γ scales Δ_L before the recursion, hence every Δ_l (the overshoot control,
    :mod:`.overshoot`); γ = 1 multiplies nothing.
    """
    deltas = [output_delta(y, stats[-1])]
    if gain != 1.0:
        deltas[0] *= deltas[0].dtype.type(gain)
        flush_subnormals_inplace(deltas[0])
    for layer in range(len(stats) - 2, -1, -1):
        deltas.append(hidden_delta(deltas[-1], net.M[layer + 1], stats[layer]))
    deltas.reverse()
    return deltas
