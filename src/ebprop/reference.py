"""The test oracle: a straightforward reference implementation of one EBP minibatch step.

Not used by the library. One NumPy expression per line of the algorithm (Soudry, Hubara & Meir
2014), no buffers, no caching beyond what the equations name, parameters as plain lists of
(n_in, n_out) arrays in the core's layout. It is the oracle of ``tests/test_speed_equivalence.py``
and the baseline of ``benchmarks/bench_train.py``, which import it as ``ebprop.reference``; it
imports nothing from ebprop on purpose (``tests/test_architecture.py`` holds that), so that the
optimised core is checked against an independent transcription of the same equations.

    forward:   μ_l = (⟨v⟩ M + b)/√c,  σ²_l = (Σ_j [E(W²)⟨v_j²⟩ − M²⟨v_j⟩²] + 1)/c,
               ⟨v_l⟩ = 2Φ(μ/σ) − 1
    backward:  Δ_L = 2 y φ(z)/(σ√c Φ(y z)),  Δ_l = (Δ_{l+1} M_{l+1}ᵀ) · 2 φ(z_l)/(σ_l √c_l)
    update:    H_l += ½ ⟨v_{l−1}⟩ᵀ Δ_l,  b_l += ½ Σ Δ_l,  M = tanh H (binary) or H (real)
"""

from __future__ import annotations

import numpy as np
from scipy import special


def means(H: np.ndarray, binary: bool) -> np.ndarray:
    """M = ⟨W⟩: tanh H for binary weights, H for real ones."""
    return np.tanh(H) if binary else H


def baseline_step(
    H: list[np.ndarray],
    b: list[np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    binary: bool,
    nu: float = 0.0,
    prior_variance: float = 1.0,
) -> np.ndarray:
    """One EBP minibatch, updating ``H`` and ``b`` in place; returns ⟨v_L⟩ before the update.

    Parameters
    ----------
    H, b : per layer (n_in, n_out) and (n_out,) arrays, updated in place.
    x : (batch, n_0) inputs; y : (batch, n_L) ±1 targets; nu : input-dropout factor ν.
    """
    dt = x.dtype.type
    M = [means(h, binary) for h in H]
    M2 = [m * m for m in M]
    # ---- forward
    ms, zs, scales = [x], [], []
    for layer in range(len(H)):
        m = ms[-1]
        c = H[layer].shape[0] + 1
        if layer == 0 and binary:
            var_sum = (x * x).sum(axis=1)[:, None] - dt(1.0 - nu) * ((x * x) @ M2[0])
        elif layer == 0:
            var_sum = dt(prior_variance) * (x * x).sum(axis=1)[:, None] + dt(nu) * ((x * x) @ M2[0])
        elif binary:
            var_sum = c - 1 - (m * m) @ M2[layer]
        else:
            var_sum = (M2[layer].sum(axis=0) + dt(prior_variance * (c - 1))) - (m * m) @ M2[layer]
        mu = (m @ M[layer] + b[layer]) / np.sqrt(dt(c))
        sigma = np.sqrt((var_sum + 1) / dt(c))
        z = mu / sigma
        scale = sigma * np.sqrt(dt(c))
        ms.append(special.erf(z / np.sqrt(dt(2))))
        zs.append(z)
        scales.append(scale)
    # ---- backward (pre-update means)
    mills = np.sqrt(dt(2 / np.pi)) / special.erfcx(-(y * zs[-1]) / np.sqrt(dt(2)))
    deltas = [2 * y * mills / scales[-1]]
    for layer in range(len(H) - 2, -1, -1):
        phi = np.exp(-(zs[layer] ** 2) / 2) / np.sqrt(dt(2 * np.pi))
        deltas.insert(0, (deltas[0] @ M[layer + 1].T) * 2 * phi / scales[layer])
    # ---- update
    for layer in range(len(H)):
        H[layer] += 0.5 * (ms[layer].T @ deltas[layer])
        b[layer] += 0.5 * deltas[layer].sum(axis=0)
    return ms[-1]
