"""The probabilistic forward pass: means and variances of every unit (central limit theorem).

Paper symbols, per layer l with c_l = n_{l−1} + 1 inputs (the +1 is the bias; a network
without intercept has c_l = n_{l−1}, no b_l and no +1, see :func:`layer_forward`):

    μ_l  = (⟨v_{l−1}⟩ M_l + b_l) / √c_l
    σ²_l = (Σ_j [E(W²) ⟨v_j²⟩ − M² ⟨v_j⟩²] + 1) / c_l
    P(v_l = +1) = Φ(μ_l/σ_l),   ⟨v_l⟩ = 2Φ(μ_l/σ_l) − 1

Layer 1 sees the real input x (⟨v⟩ = x, ⟨v²⟩ = x²); deeper layers see ±1 units (⟨v²⟩ = 1).
Input dropout is analytic: no mask is sampled, only the first layer's variance grows by the
factor ν = 4p(1−p) (see :func:`ebprop.core.families.dropout_nu`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .network import Network
from .numerics import sign_mean


@dataclass
class LayerStats:
    """Forward statistics of one layer for a minibatch.

    Attributes
    ----------
    z : ndarray (batch, n_out)
        μ/σ.
    scale : ndarray (batch, n_out)
        σ√c = √(σ²c), the common denominator of the backward pass.
    v : ndarray (batch, n_out)
        ⟨v⟩ = 2Φ(z) − 1.
    fan_in : int
        c = n_in + 1.
    """

    z: np.ndarray
    scale: np.ndarray
    v: np.ndarray
    fan_in: int

    @property
    def sigma(self) -> np.ndarray:
        """σ, the standard deviation of the pre-activation."""
        return self.scale / np.sqrt(self.fan_in)

    @property
    def mu(self) -> np.ndarray:
        """μ, the mean of the pre-activation."""
        return self.z * self.sigma


def layer_forward(
    m: np.ndarray,
    M: np.ndarray,
    M2: np.ndarray,
    b: np.ndarray,
    var_sum: np.ndarray,
    intercept: bool = True,
) -> LayerStats:
    """Statistics of one layer given the summed input variance.

    Parameters
    ----------
    m : (batch, n_in) input means ⟨v_{l−1}⟩ (x for layer 1).
    M, M2 : (n_in, n_out) weight means and their squares.
    b : (n_out,) biases.
    var_sum : (batch, n_out) Σ_j Var(W_jk v_j), without the bias's +1; overwritten.
    intercept : False for a layer without bias: c = n_in, μ = ⟨v⟩M/√c and σ²c = Σ Var, which
        is floored at the dtype's machine epsilon where the +1 kept it from 0 (a saturated
        layer, an all-zero input); b is not read.
    """
    # Σ Var ≥ 0 exactly; a difference of sums (binary: Σx² − x²@M²) can round below 0 when the
    # weights are saturated and the inputs large, so clamp before the bias's +1.
    floor = 0.0 if intercept else np.finfo(var_sum.dtype).eps
    np.maximum(var_sum, floor, out=var_sum)
    if intercept:
        var_sum += 1.0
    scale = np.sqrt(var_sum, out=var_sum)  # √(σ²c), in var_sum's storage
    z = m @ M
    if intercept:
        z += b
    z /= scale  # μ/σ = (m M + b)/√c ÷ √(σ²c)/√c
    return LayerStats(z=z, scale=scale, v=sign_mean(z), fan_in=M.shape[0] + int(intercept))


def forward(net: Network, x: np.ndarray, nu: float = 0.0) -> list[LayerStats]:
    """Run the probabilistic forward pass over all layers.

    Parameters
    ----------
    net : Network
    x : ndarray (batch, n_0)
        Real inputs, in ``net.dtype``.
    nu : float
        Input-dropout factor ν (0 = no dropout).

    Returns
    -------
    list of LayerStats, one per layer; the last one's ``v`` is the EBP-P output.
    """
    family = net.family
    stats: list[LayerStats] = []
    # Layer 1: deterministic real input. σ²c − 1 = α Σ_j x_j² + β (x² @ M²).
    alpha, beta = family.first_layer_coefficients(nu)
    x2 = x * x
    x2_sum = x2.sum(axis=1, keepdims=True)  # (batch, 1)
    if beta != 0.0:
        var_sum = x2 @ net.M2[0]
        var_sum *= x.dtype.type(beta)
        var_sum += x.dtype.type(alpha) * x2_sum
    else:  # real weights without dropout: M² of layer 1 is not needed at all
        var_sum = np.repeat(x.dtype.type(alpha) * x2_sum, net.H[0].shape[1], axis=1)
    intercept = net.fit_intercept
    stats.append(layer_forward(x, net.M[0], net.M2[0], net.b[0], var_sum, intercept))
    # Layers ≥ 2: ±1 inputs, E(v²) = 1. σ²c − 1 = Σ_j E(W²_jk) − ⟨v⟩² @ M².
    for layer in range(1, len(net.H)):
        m = stats[-1].v
        var_sum = family.hidden_variance_sum(m, net.M2[layer])
        stats.append(
            layer_forward(m, net.M[layer], net.M2[layer], net.b[layer], var_sum, intercept)
        )
    return stats
