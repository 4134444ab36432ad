"""Weight families: what distinguishes binary from real weights.

Propagation (:mod:`ebprop.core.forward`) is written once against the moments a family supplies.
Parameters are stored in the core layout ``(n_in, n_out)`` per layer (the transpose of the
paper's H_l, which is n_l × n_{l−1}), so ``x @ M`` is the layer's pre-activation.

Symbols (Soudry, Hubara & Meir 2014): H — posterior parameter; M = ⟨W⟩ — weight mean;
E(W²) — weight second moment; ν = 4p(1−p) — the input-dropout factor for keep probability p.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np


class WeightFamily(Protocol):
    """What a weight posterior family must provide."""

    name: str
    bits_per_weight: int

    def means(self, H: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """M = ⟨W⟩ from the posterior parameter H, any shape."""

    def first_layer_coefficients(self, nu: float) -> tuple[float, float]:
        """(α, β) such that the first layer's σ²c − 1 = α Σ_j x_j² + β (x² @ M²)."""

    def hidden_variance_sum(self, m: np.ndarray, M2: np.ndarray) -> np.ndarray:
        """Σ_j [E(W_jk²) − M²_jk ⟨v_j⟩²] for ±1 inputs of means m (batch, n_in): (batch, n_out)."""

    def most_probable(self, H: np.ndarray) -> np.ndarray:
        """The single most probable weights (used by EBP-D), same shape as H."""


@dataclass(frozen=True)
class BinaryWeights:
    """W ∈ {−1, +1} with P(W = +1) = (1 + tanh H)/2: M = tanh H, Var W = 1 − M², E(W²) = 1."""

    name: str = "binary"
    bits_per_weight: int = 1

    def means(self, H: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return np.tanh(H, out=out)

    def first_layer_coefficients(self, nu: float) -> tuple[float, float]:
        # Σ_j (1 − (1 − ν) M²_j) x_j²  — the authors' analytic input dropout when ν > 0.
        return 1.0, -(1.0 - nu)

    def hidden_variance_sum(self, m: np.ndarray, M2: np.ndarray) -> np.ndarray:
        # E(W²) = 1: n_in − ⟨v⟩² @ M².
        var_sum = (m * m) @ M2
        np.subtract(M2.dtype.type(M2.shape[0]), var_sum, out=var_sum)
        return var_sum

    def most_probable(self, H: np.ndarray) -> np.ndarray:
        # Tie rule: sign(0) = +1 (a weight with H = 0 is equally likely either way).
        return np.where(H >= 0, 1, -1).astype(H.dtype)


@dataclass(frozen=True)
class RealWeights:
    """Gaussian W with mean M = H and fixed variance ``prior_variance`` (never updated)."""

    prior_variance: float = 1.0
    name: str = "real"
    bits_per_weight: int = 32
    #: M = H: :class:`~ebprop.core.network.Network` lets ``M[l]`` be ``H[l]`` instead of a copy.
    means_are_parameters: ClassVar[bool] = True

    def means(self, H: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is None:
            return H.copy()
        np.copyto(out, H)
        return out

    def first_layer_coefficients(self, nu: float) -> tuple[float, float]:
        # Σ_j (v + ν M²_j) x_j² with v = prior_variance.
        return float(self.prior_variance), float(nu)

    def hidden_variance_sum(self, m: np.ndarray, M2: np.ndarray) -> np.ndarray:
        # Σ_j (M² + v) − ⟨v⟩² M² = (1 − ⟨v⟩²) @ M² + n_in v: one pass over M² instead of two
        # (a matrix product and a column sum) — same quantity, different round-off only.
        one_minus_m2 = m * m
        np.subtract(m.dtype.type(1.0), one_minus_m2, out=one_minus_m2)
        var_sum = one_minus_m2 @ M2
        var_sum += M2.dtype.type(self.prior_variance * M2.shape[0])
        return var_sum

    def most_probable(self, H: np.ndarray) -> np.ndarray:
        return H.copy()


def make_family(weights: str, prior_variance: float = 1.0) -> WeightFamily:
    """Return the family named ``weights`` ("binary" or "real")."""
    if weights == "binary":
        return BinaryWeights()
    if weights == "real":
        return RealWeights(prior_variance=prior_variance)
    raise ValueError(f"weights must be 'binary' or 'real', got {weights!r}")


def dropout_nu(keep_probability: float | None) -> float:
    """ν = 4p(1 − p) for input keep probability p; 0 when dropout is off (None)."""
    if keep_probability is None:
        return 0.0
    p = float(keep_probability)
    return 4.0 * p * (1.0 - p)
