"""The overshoot control's gain γ in compiled code: :func:`ebprop.core.overshoot.overshoot_gain`.

Same quantities, same formulas (the derivation is in :mod:`ebprop.core.overshoot`), summed in
float64 over the minibatch's valid rows: T_k = Σ_s c(y z) K/σ²c per output unit, γ = 1/max_k T_k
where that exceeds 1, else exactly 1 (nothing is multiplied). The cost is B·n_{L−1} for the
inputs' squares, plus B·n_0·n_L for a network with no hidden layer.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from ._activations import erfcx
from .system import enter_kernel_cache, leave_kernel_cache

enter_kernel_cache()  # numba fixes each function's cache folder when it is decorated

__all__ = ["gain"]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_FAR = 1e4  # as core.overshoot: beyond it c is 1 to the last bit


@nb.njit(error_model="numpy", nogil=True, cache=True)
def _curvature(t):  # pragma: no cover - compiled
    # c = ψ(ψ + t), ψ = φ(t)/Φ(t), clipped to [0, 1] (core.overshoot.curvature)
    if t < -_FAR:
        return 1.0
    psi = _SQRT_2_OVER_PI / erfcx(-t * _INV_SQRT_2)
    return min(max(psi * (psi + t), 0.0), 1.0)


@nb.njit(error_model="numpy", nogil=True, cache=True)
def gain(y, z, scale, U, M, n_valid, binary, hidden, intercept):  # pragma: no cover - compiled
    """γ ∈ (0, 1] for the output layer of a minibatch.

    y, z, scale (B, n_L): targets, z = μ/σ, σ√c; U (B, n_in) the output layer's inputs (x, or
    the last hidden ⟨v⟩ when ``hidden``); M (n_in, n_L) its weight means; rows ≥ n_valid are
    padding. Without ``intercept`` the bias's 1 leaves K and its floor (σ²c has lost it too).
    """
    bias = 1.0 if intercept else 0.0  # the bias's share of K, as core.overshoot's
    n_in, n_out = M.shape
    T = np.zeros(n_out)
    for s in range(n_valid):
        u2 = 0.0
        for j in range(n_in):
            u = float(U[s, j])
            u2 += u * u
        for k in range(n_out):
            sc = float(scale[s, k])
            S = sc * sc
            if not binary:
                K = bias + u2
            elif hidden:
                K = S - (n_in - u2)
            else:
                q = 0.0
                for j in range(n_in):
                    u, m = float(U[s, j]), float(M[j, k])
                    q += (u * u) * (m * m)
                K = bias + u2 - q
            K = max(K, bias)
            if binary:
                K = min(K, S)  # K ≤ σ²c exactly: a single sample is never damped
            T[k] += _curvature(float(y[s, k]) * float(z[s, k])) * K / S
    worst = T.max() if n_out > 0 else 0.0
    return 1.0 / worst if worst > 1.0 else 1.0


@nb.njit(nogil=True, cache=True)
def scale_rows(delta, n_valid, g):  # pragma: no cover - compiled
    """delta[:n_valid] *= γ, in the array's dtype (the core's ``deltas[-1] *= dtype(γ)``)."""
    f = delta.dtype.type(g)
    tiny = delta.dtype.type(np.finfo(delta.dtype).tiny)
    for s in range(n_valid):
        for k in range(delta.shape[1]):
            d = delta[s, k] * f
            delta[s, k] = d if abs(d) >= tiny else delta.dtype.type(0.0)  # as the core's


leave_kernel_cache()
