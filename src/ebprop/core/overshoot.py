"""Overshoot control: why the summed minibatch update diverges, and the gain γ that stops it.

EBP's update for one sample is a calibrated step. For output unit k and sample s, with
a = ⟨v⟩M + b (so μ = a/√c), σ²c = S and t = y z, the update ½Δ = y ψ(t)/√S, ψ = φ/Φ, is the
gradient of log Φ(y a/√S) with respect to the means (M, b), and the means move by it scaled by
the weights' variances (binary: ΔM ≈ (1 − M²) ΔH; real: ΔM = ΔH). Its effect on the sample's
own a is therefore ½Δ · K, with

    K_sk = 1 + Σ_j (1 − M²_jk) ⟨v_j⟩²        (binary; real weights: 1 + Σ_j ⟨v_j⟩²)

the step's norm in the metric of the update (the 1 is the bias). The curvature of log Φ along a
is −c/S, c = ψ(ψ + t) ∈ (0, 1). One sample's step thus covers the fraction λ_s = c K/S ≤ 1 of
the Newton step to its own optimum (K ≤ S for binary weights: S = 1 + Σ Var(W v) ⊇ K's terms):
a single sample never overshoots, which is why batch 1 never diverges.

The minibatch update is the *sum* of the B samples' steps, all taken from the same means. In the
quadratic model of Σ_s log Φ around the current means, it is a gradient step of length 1 in the
update's metric, whose largest curvature λ_max is the top eigenvalue of the B × B matrix
A_ts = √(c_t/S_t) (1 + Σ_j P_j u_tj u_sj) √(c_s/S_s) (P the update's metric, u the layer's
inputs). The step overshoots the optimum along that direction by the factor λ_max − 1 and
diverges (each minibatch's error larger than the last) when λ_max > 2. When the samples' steps
point the same way (saturated weights and inputs: every K_ts ≈ K_ss, the bias's 1 shared by all)
λ_max ≈ Σ_s c_s K_s/S_s, up to B when σ²c ≈ K: "σ²c below the batch size". On the digits with
16 hidden units and batch 32 it is 5 from the second minibatch, then 20, and the fields grow
geometrically to the bound within ten minibatches.

The control: λ_max ≤ trace A = Σ_s c_s K_s/S_s =: T_k for output unit k. Where max_k T_k ≤ 1
nothing can overshoot, and the update is today's, bit for bit. Otherwise the output Δ_L is
scaled by γ = 1/max_k T_k before the backward recursion (Δ_l is linear in Δ_L, so every layer's
step shrinks by γ): the damped step is at most the Newton step along every direction. This is a
minibatch-adaptive form of the damping of Lucibello et al. (2022), with no parameter to tune.
Only the output layer is measured (B·n_{L−1}·n_L multiply-adds, a fraction of one forward
pass); the hidden layers' curvature is the output's propagated back, and the benchmark
(benchmarks/divergence_grid.py) found no divergence left with this single γ.

The trace bound is loose where the samples' steps are not aligned: on MNIST at batch 10 (784-100-
10) the exact λ_max stayed below 0.83 while T reached 1.12 in under 1 % of the minibatches, so
such runs are damped slightly there and are no longer bit-identical to the old update.
"""

from __future__ import annotations

import numpy as np

from .forward import LayerStats
from .network import Network
from .numerics import pdf_over_cdf

__all__ = ["curvature", "overshoot_gain"]

#: Beyond this |t| (a sample wrong by 10⁴ standard deviations) ψ + t cancels in float64; there
#: c = 1 − O(1/t²) is 1 to the last bit.
_FAR = 1e4


def curvature(t: np.ndarray) -> np.ndarray:
    """c = ψ(t)(ψ(t) + t) = −d² log Φ(t)/dt², in [0, 1], float64, for t = y z of any shape."""
    t = np.asarray(t, dtype=np.float64)
    psi = pdf_over_cdf(t)
    c = np.clip(psi * (psi + t), 0.0, 1.0)
    return np.where(t < -_FAR, 1.0, c)


def overshoot_gain(net: Network, x: np.ndarray, y: np.ndarray, stats: list[LayerStats]) -> float:
    """γ ∈ (0, 1] for this minibatch: 1 where the summed update cannot overshoot, else 1/max_k T_k.

    Parameters
    ----------
    net : the network (its output layer's M² before the update).
    x : (batch, n_0) inputs (the output layer's inputs when there is no hidden layer).
    y : (batch, n_L) ±1 targets.
    stats : the forward statistics of the minibatch; stats[-1] is the output layer's.
    """
    out = stats[-1]
    bias = 1.0 if getattr(net, "fit_intercept", True) else 0.0  # the bias's share of K and σ²c
    S = np.square(out.scale, dtype=np.float64)  # σ²c of every output unit, (batch, n_L)
    if len(stats) == 1:
        u2 = np.square(x, dtype=np.float64)
        K = np.repeat(bias + u2.sum(axis=1, keepdims=True), S.shape[1], axis=1)
        if net.family.name == "binary":
            K -= u2 @ net.M2[0].astype(np.float64)  # 1 + Σ_j (1 − M²_jk) x²_sj
    else:
        m2_sum = np.square(stats[-2].v, dtype=np.float64).sum(axis=1, keepdims=True)
        if net.family.name == "binary":
            # σ²c = 1 + Σ_j (1 − M²⟨v_j⟩²) over ±1 inputs, so K = σ²c − Σ_j (1 − ⟨v_j⟩²):
            # no product over the weights (the kernels derive it the same way)
            K = S - (stats[-2].v.shape[1] - m2_sum)
        else:
            K = np.repeat(bias + m2_sum, S.shape[1], axis=1)
    np.maximum(K, bias, out=K)  # round-off of the difference above
    if net.family.name == "binary":
        # K ≤ σ²c exactly for binary weights (so one sample alone has T ≤ 1); keep it so in
        # round-off too: a single sample is never damped
        np.minimum(K, S, out=K)
    T = (curvature(y * out.z) * K / S).sum(axis=0).max()
    return 1.0 if not T > 1.0 else float(1.0 / T)
