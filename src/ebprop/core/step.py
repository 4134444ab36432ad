"""One EBP minibatch step: forward → backward (damped where the sum would overshoot) → update.

Start reading here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .backward import backward
from .forward import forward
from .network import Network
from .overshoot import overshoot_gain
from .update import update_inplace


def step_inplace(
    net: Network,
    x: np.ndarray,
    y: np.ndarray,
    nu: float = 0.0,
    rho: Sequence[float] | None = None,
) -> np.ndarray:
    """Train ``net`` on one minibatch, in place.

    Parameters
    ----------
    net : Network
    x : ndarray (batch, n_0)
        Inputs in ``net.dtype``.
    y : ndarray (batch, n_L)
        Targets of ±1 (one-hot as ±1 for multiclass), in ``net.dtype``.
    nu : float
        Input-dropout factor ν (0 = off).
    rho : one factor per layer, or None
        Reinforcement: H_l ← ρ_l H_l + ΔH_l (see :mod:`.update`); None is plain EBP.

    Returns
    -------
    ndarray (batch, n_L)
        The EBP-P output ⟨v_L⟩ *before* the update (for the online training error).
    """
    stats = forward(net, x, nu)
    # γ = 1 unless the summed update could overshoot (σ²c below the batch size): :mod:`.overshoot`
    deltas = backward(net, stats, y, overshoot_gain(net, x, y, stats))
    update_inplace(net, x, stats, deltas, rho)
    return stats[-1].v
