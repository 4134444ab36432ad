"""The network's parameters and the weight moments derived from them.

Layout, stated once for the whole core: layer ``l`` has ``H[l]`` of shape (n_in, n_out) — the
transpose of the paper's H_l — and bias ``b[l]`` of shape (n_out,). Activations are
(batch, units). The moments ``M = ⟨W⟩`` and ``M2 = M²`` are cached and kept in step with ``H`` by
:meth:`Network.refresh_moments_inplace`, so each is computed once per minibatch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .families import WeightFamily


@dataclass
class Network:
    """Posterior parameters of a fully connected EBP network.

    Attributes
    ----------
    family : WeightFamily
        Binary or real weights.
    H : list of ndarray, each (n_in, n_out)
        Posterior parameters (binary: log-odds/2 of W = +1; real: the weight means).
    b : list of ndarray, each (n_out,)
        Real biases.
    M, M2 : list of ndarray, each (n_in, n_out)
        Cached ⟨W⟩ and ⟨W⟩²; derived from ``H``.
    """

    family: WeightFamily
    H: list[np.ndarray]
    b: list[np.ndarray]
    M: list[np.ndarray] = field(default_factory=list)
    M2: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.H) != len(self.b):
            raise ValueError("H and b must have one entry per layer")
        if not self.M:
            self.M = [np.empty_like(h) for h in self.H]
            self.M2 = [np.empty_like(h) for h in self.H]
            for layer in range(len(self.H)):
                self.refresh_moments_inplace(layer)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Widths (n_0, n_1, …, n_L)."""
        return (self.H[0].shape[0],) + tuple(h.shape[1] for h in self.H)

    @property
    def dtype(self) -> np.dtype:
        return self.H[0].dtype

    def refresh_moments_inplace(self, layer: int) -> None:
        """Recompute M and M² of ``layer`` from its H (after an update)."""
        self.family.means(self.H[layer], out=self.M[layer])
        np.multiply(self.M[layer], self.M[layer], out=self.M2[layer])


def init_network(
    sizes: Sequence[int],
    family: WeightFamily,
    rng: np.random.Generator,
    init_variance: float = 1.0,
    dtype: np.dtype | type = np.float32,
) -> Network:
    """Draw H uniformly with variance ``init_variance / n_in`` per layer; biases 0.

    Parameters
    ----------
    sizes : sequence of int
        (n_0, n_1, …, n_L): inputs, hidden widths, outputs.
    """
    H, b = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        half_width = np.sqrt(3.0 * init_variance / n_in)  # U(−a, a) has variance a²/3
        H.append(rng.uniform(-half_width, half_width, size=(n_in, n_out)).astype(dtype))
        b.append(np.zeros(n_out, dtype=dtype))
    return Network(family=family, H=H, b=b)
