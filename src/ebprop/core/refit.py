"""Post-hoc thresholds for the deterministic network (EBP-D), fitted on training data.

Not in Soudry et al.: a cheap repair of EBP-D that costs nothing in hardware. The EBP-D network
keeps W = sign(H) and replaces only each hidden unit's bias b_k (its integer threshold once
deployed) by the one under which the deterministic unit

    h_k = sign(Σ_j W_jk h_j + b_k)          (h = the deterministic layer below; sign(0) = +1)

agrees most often with the sign of its EBP-P counterpart's mean, sign(μ_k), on the same inputs.
Layers are fitted bottom-up, each on the outputs of the already refitted layers below, so the
errors of lower layers are compensated as well as can be by a threshold. The output layer keeps its
biases (its argmax is not a sign decision).
"""

from __future__ import annotations

import numpy as np

from .forward import forward
from .network import Network
from .numerics import sign_units_inplace

__all__ = ["best_thresholds", "refit_deterministic_biases"]


def best_thresholds(a: np.ndarray, target: np.ndarray, theta0: np.ndarray) -> np.ndarray:
    """Per column, the θ maximising agreement of ``a ≥ θ`` with ``target``.

    Parameters
    ----------
    a : ndarray (n, units)
        Pre-activations without bias.
    target : ndarray of bool (n, units)
        True where the unit should fire.
    theta0 : ndarray (units,)
        The current thresholds; among equally good thresholds the one closest to it is kept.

    Returns
    -------
    ndarray (units,) float64
        θ; a unit fires iff a ≥ θ. θ lies midway between two neighbouring distinct values of
        ``a`` (or 1 beyond the extremes), so the decision is robust to round-off.
    """
    n, units = a.shape
    order = np.argsort(a, axis=0, kind="stable")
    a_sorted = np.take_along_axis(a, order, axis=0).astype(np.float64)
    t_sorted = np.take_along_axis(target, order, axis=0)
    # θ at split i (i = 0..n): samples [i, n) fire. Agreement = #(t=1 in [i, n)) + #(t=0 in [0, i)).
    pos_below = np.vstack([np.zeros((1, units)), np.cumsum(t_sorted, axis=0)])  # (n+1, units)
    neg_below = np.arange(n + 1)[:, None] - pos_below
    agreement = (pos_below[-1] - pos_below) + neg_below
    # A split is only realisable between distinct values (ties fire together).
    valid = np.ones((n + 1, units), dtype=bool)
    valid[1:n] = a_sorted[1:] > a_sorted[:-1]
    lower = np.vstack([a_sorted[:1] - 2.0, a_sorted])  # value just below split i
    upper = np.vstack([a_sorted, a_sorted[-1:] + 2.0])  # value at split i
    theta = 0.5 * (lower + upper)
    score = np.where(valid, agreement, -1.0)
    best = score.max(axis=0)
    # Ties: the candidate closest to the current threshold.
    distance = np.where(score == best, np.abs(theta - theta0[None, :]), np.inf)
    return theta[distance.argmin(axis=0), np.arange(units)]


def refit_deterministic_biases(net: Network, X: np.ndarray, chunk: int = 4096) -> list[np.ndarray]:
    """Biases of the EBP-D network refitted on ``X`` (see the module docstring).

    Parameters
    ----------
    net : Network
    X : ndarray (n, n_0)
        Training inputs (already preprocessed), in ``net.dtype``.

    Returns
    -------
    list of ndarray, one (n_l,) per layer, in ``net.dtype``
        Hidden layers' biases refitted; the output layer's copied unchanged. ``net`` is not
        modified.
    """
    weights = [net.family.most_probable(h) for h in net.H]
    # EBP-P targets: sign of each hidden unit's mean pre-activation (z = μ/σ has μ's sign).
    targets = [np.empty((X.shape[0], h.shape[1]), dtype=bool) for h in net.H[:-1]]
    for s in range(0, X.shape[0], chunk):
        stats = forward(net, X[s : s + chunk])
        for layer, t in enumerate(targets):
            t[s : s + chunk] = stats[layer].z >= 0
    biases: list[np.ndarray] = []
    h = X
    for layer, W in enumerate(weights[:-1]):
        a = h @ W
        theta = best_thresholds(a, targets[layer], -net.b[layer].astype(np.float64))
        b = (-theta).astype(net.dtype)
        biases.append(b)
        h = sign_units_inplace(a + b)
    biases.append(net.b[-1].copy())
    return biases
