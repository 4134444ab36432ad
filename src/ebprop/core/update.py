"""The closed-form EBP update (no learning rate).

    H_l += ½ Δ_l ⟨v_{l−1}⟩ᵀ,   b_l += ½ Σ Δ_l,   summed over the minibatch, ⟨v_0⟩ = x,

then the cached means M = tanh H (binary) or M = H (real) and M² are recomputed.
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

    Notes
    -----
    Each layer is walked in blocks of input rows (:meth:`Network.row_blocks`): the block's
    increment ½ ⟨v⟩ᵀ Δ is written into a cache-sized scratch buffer, added to H, and M, M² are
    recomputed while the block is still in cache. H, M and M² thus each cross memory once per
    minibatch, instead of once per operation (measured in docs/performance.md).
    """
    inputs = [x] + [s.v for s in stats[:-1]]
    for layer, (v_prev, delta) in enumerate(zip(inputs, deltas, strict=True)):
        half_delta = 0.5 * delta  # ½ folded into the small (batch, n_out) factor
        net.b[layer] += half_delta.sum(axis=0)
        # core layout (n_in, n_out): ⟨v⟩ᵀ (½Δ) is the paper's ½ Δ ⟨v⟩ᵀ transposed.
        v_prev_T = np.ascontiguousarray(v_prev.T)  # (n_in, batch): row blocks are contiguous
        H = net.H[layer]
        for rows in net.row_blocks(layer):
            increment = net.scratch(layer, rows.stop - rows.start)
            if v_prev_T.shape[1] == 1:
                # batch of 1: an outer product; BLAS's rank-1 path measured ~5× slower here.
                np.multiply(v_prev_T[rows], half_delta, out=increment)
            else:
                np.matmul(v_prev_T[rows], half_delta, out=increment)
            H[rows] += increment
            net.refresh_moments_inplace(layer, rows)
