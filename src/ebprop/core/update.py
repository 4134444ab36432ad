"""The closed-form EBP update (no learning rate).

    H_l += ½ Δ_l ⟨v_{l−1}⟩ᵀ,   b_l += ½ Σ Δ_l,   summed over the minibatch, ⟨v_0⟩ = x,

then the cached means M = tanh H (binary) or M = H (real) are recomputed.
"""

from __future__ import annotations

import numpy as np

from .forward import LayerStats
from .network import Network


def update_inplace(
    net: Network, x: np.ndarray, stats: list[LayerStats], deltas: list[np.ndarray]
) -> None:
    """Apply the update to ``net`` in place and refresh its cached moments.

    Parameters
    ----------
    x : (batch, n_0) inputs; stats : forward statistics; deltas : Δ_l (batch, n_l) per layer.
    """
    inputs = [x] + [s.v for s in stats[:-1]]
    for layer, (v_prev, delta) in enumerate(zip(inputs, deltas, strict=True)):
        # core layout (n_in, n_out): ½ ⟨v⟩ᵀ Δ is the paper's ½ Δ ⟨v⟩ᵀ transposed.
        net.H[layer] += 0.5 * (v_prev.T @ delta)
        net.b[layer] += 0.5 * delta.sum(axis=0)
        net.refresh_moments_inplace(layer)
