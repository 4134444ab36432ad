"""The closed-form EBP update (no learning rate), with optional reinforcement.

    H_l ← ρ_l H_l + ½ Δ_l ⟨v_{l−1}⟩ᵀ,   b_l += ½ Σ Δ_l,   summed over the minibatch, ⟨v_0⟩ = x,

then the cached means M = tanh H (binary) or M = H (real) and M² are recomputed.

ρ_l = 1 is the paper's update. ρ_l > 1 is *reinforcement* (not in Soudry et al.; from
Lucibello, Pittorino, Perugini & Zecchina 2022, who carry the posterior over as the next prior
raised to the power ρ, i.e. the binary field H scaled by ρ): it polarises each weight's posterior
towards one sign, so that the most probable network (EBP-D) approaches the posterior mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .forward import LayerStats
from .network import Network
from .numerics import flush_subnormals_inplace

#: |H| and |b| are kept within this bound. Not part of the paper: the summed minibatch update
#: overshoots when σ²c < batch size (e.g. saturated small nets at batch ≥ 16) and then grows
#: geometrically until it overflows; :mod:`.overshoot` now damps such minibatches, and this bound
#: is the last resort behind it. It keeps every number finite without touching normal training
#: (tanh saturates in float64 by |H| = 20; MNIST runs stay far below 1e4), and :func:`diverged`
#: lets callers tell the user.
PARAMETER_BOUND = 1e4


def diverged(net: Network, rho: Sequence[float] | None = None) -> bool:
    """True when some parameter has reached :data:`PARAMETER_BOUND` (the update diverged).

    Parameters
    ----------
    net : the network.
    rho : the reinforcement factors ρ_l in force (None: plain EBP). A binary layer with ρ_l > 1
        is *meant* to grow: its fields rise by ρ_l per minibatch (×1.65 per 50,000-image epoch at
        ρ = 1.0001, batch 10) and reach the bound some 16 epochs after reinforcement starts. There
        a field at the bound is a weight fixed at ±1 (tanh H is ±1 to the last bit from |H| ≈ 19
        in float64), not a divergence, so only that layer's biases are checked.
    """
    binary = net.family.name == "binary"
    for layer, (h, b) in enumerate(zip(net.H, net.b, strict=True)):
        saturating = binary and rho is not None and rho[layer] > 1.0
        checked = (b,) if saturating else (h, b)
        if any(p.size and np.abs(p).max() >= PARAMETER_BOUND for p in checked):
            return True
    return False


def update_inplace(
    net: Network,
    x: np.ndarray,
    stats: list[LayerStats],
    deltas: list[np.ndarray],
    rho: Sequence[float] | None = None,
) -> None:
    """Apply the update to ``net`` in place and refresh its cached moments.

    Parameters
    ----------
    x : (batch, n_0) inputs; stats : forward statistics; deltas : Δ_l (batch, n_l) per layer.
    rho : one factor ρ_l per layer, or None (all 1)
        Reinforcement: H_l is scaled by ρ_l before the increment is added. A factor of exactly 1
        skips the multiplication, so ``rho=(1, …, 1)`` is bit-identical to ``rho=None``.

    Notes
    -----
    Each layer is walked in blocks of input rows (:meth:`Network.row_blocks`): the block's
    increment ½ ⟨v⟩ᵀ Δ is written into a cache-sized scratch buffer, added to H, and M, M² are
    recomputed while the block is still in cache. H, M and M² thus each cross memory once per
    minibatch, instead of once per operation (measured in docs/performance.md).
    """
    inputs = [x] + [s.v for s in stats[:-1]]
    if rho is not None and len(rho) != len(deltas):
        raise ValueError(f"rho has {len(rho)} factors for {len(deltas)} layers")
    for layer, (v_prev, delta) in enumerate(zip(inputs, deltas, strict=True)):
        factor = 1.0 if rho is None else float(rho[layer])
        half_delta = flush_subnormals_inplace(0.5 * delta)  # ½ folded into the small factor
        if net.fit_intercept:  # without intercept b stays 0: it is not a parameter
            net.b[layer] += half_delta.sum(axis=0)
            np.clip(net.b[layer], -PARAMETER_BOUND, PARAMETER_BOUND, out=net.b[layer])
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
            if factor != 1.0:
                # Fused into the block walk: the scaling costs no extra pass over memory.
                H[rows] *= H.dtype.type(factor)
            H[rows] += increment
            np.clip(H[rows], -PARAMETER_BOUND, PARAMETER_BOUND, out=H[rows])
            net.refresh_moments_inplace(layer, rows)
