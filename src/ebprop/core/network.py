"""The network's parameters and the weight moments derived from them.

Layout, stated once for the whole core: layer ``l`` has ``H[l]`` of shape (n_in, n_out) — the
transpose of the paper's H_l — and bias ``b[l]`` of shape (n_out,). Activations are
(batch, units). The moments ``M = ⟨W⟩`` and ``M2 = M²`` are cached and kept in step with ``H`` by
:meth:`Network.refresh_moments_inplace`, so each is computed once per minibatch. For a family whose
means are the parameters themselves (real weights, M = H), ``M[l]`` *is* ``H[l]`` — one array, not
a copy that every update would have to rewrite.

Performance notes (measurements in docs/performance.md): all arrays are C-contiguous; the update
walks each layer in blocks of rows small enough to stay in the core's cache
(:meth:`Network.row_blocks`), using one preallocated scratch buffer per layer
(:meth:`Network.scratch`), so H, M and M² are each streamed through memory once per minibatch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .families import WeightFamily

#: Start of every array the library allocates for H, M and M², in bytes: a cache line. The
#: kernels' vector loads (32 bytes, or 64 with AVX-512) then never straddle a cache line; a whole
#: fused layer pass with 32-byte vectors ran 6–14 % faster on arrays that start on a 32-byte
#: boundary than on ones 16 bytes past it (an array from NumPy's allocator may start at either;
#: docs/performance.md, decision 9).
ALIGNMENT = 64


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an :data:`ALIGNMENT` boundary."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    buffer = np.empty(n * dtype.itemsize + ALIGNMENT, dtype=np.uint8)
    start = -buffer.ctypes.data % ALIGNMENT
    return buffer[start : start + n * dtype.itemsize].view(dtype).reshape(shape)


def _aligned_like(a: np.ndarray) -> np.ndarray:
    return aligned_empty(a.shape, a.dtype)


#: Field metadata of a :class:`Network` field that is an estimator parameter.
OPTION = {"option": True}


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
    fit_intercept : bool
        False: the layers have no bias; ``b`` stays 0 (never read by the forward pass, never
        updated) and c = n_in (:func:`ebprop.core.forward.layer_forward`).

    The keyword-only fields marked ``OPTION`` are estimator parameters (``network=True`` in
    :mod:`ebprop.params`, passed by name); :meth:`changed_options` lists those not at their
    defaults, so that code which implements only the defaults (the fused kernels) can decline
    a network without naming each option.
    """

    family: WeightFamily
    H: list[np.ndarray]
    b: list[np.ndarray]
    M: list[np.ndarray] = field(default_factory=list)
    M2: list[np.ndarray] = field(default_factory=list)
    fit_intercept: bool = field(default=True, kw_only=True, metadata=OPTION)
    #: Bytes of H per row block of the update (256 KiB measured best on a 1 MiB L2 cache).
    block_bytes: int = field(default=256 * 1024, kw_only=True, repr=False, compare=False)
    # Scratch buffers of the update, one per layer, made on first use (not parameters).
    _scratch: dict[int, np.ndarray] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def changed_options(self) -> frozenset[str]:
        """The option fields (marked ``OPTION``) whose value is not their default."""
        return frozenset(
            f.name
            for f in fields(self)
            if f.metadata.get("option") and getattr(self, f.name) != f.default
        )

    def __post_init__(self) -> None:
        if len(self.H) != len(self.b):
            raise ValueError("H and b must have one entry per layer")
        if not self.M:
            if getattr(self.family, "means_are_parameters", False):
                self.M = list(self.H)
            else:
                self.M = [_aligned_like(h) for h in self.H]
            self.M2 = [_aligned_like(h) for h in self.H]
            for layer in range(len(self.H)):
                self.refresh_moments_inplace(layer)

    @property
    def sizes(self) -> tuple[int, ...]:
        """Widths (n_0, n_1, …, n_L)."""
        return (self.H[0].shape[0],) + tuple(h.shape[1] for h in self.H)

    @property
    def dtype(self) -> np.dtype:
        return self.H[0].dtype

    def refresh_moments_inplace(self, layer: int, rows: slice = slice(None)) -> None:
        """Recompute M and M² of ``layer`` (or of its input ``rows``) from H, after an update."""
        H, M, M2 = self.H[layer], self.M[layer], self.M2[layer]
        if M is not H:  # real weights keep M = H as one array: nothing to copy
            self.family.means(H[rows], out=M[rows])
        np.multiply(M[rows], M[rows], out=M2[rows])

    def row_blocks(self, layer: int) -> list[slice]:
        """Slices of input rows of ``layer`` covering about ``block_bytes`` of H each (≥ 8 rows).

        Sized so that a block of H, M, M² and the scratch buffer stay in a core's cache while the
        update and the refresh of the moments pass over it (see docs/performance.md).
        """
        n_in, n_out = self.H[layer].shape
        rows = max(8, self.block_bytes // (n_out * self.H[layer].itemsize))
        return [slice(r, min(r + rows, n_in)) for r in range(0, n_in, rows)]

    def scratch(self, layer: int, rows: int) -> np.ndarray:
        """A reusable (rows, n_out) buffer of ``layer`` (its contents are garbage)."""
        buf = self._scratch.get(layer)
        n_out = self.H[layer].shape[1]
        if buf is None or buf.shape[0] < rows or buf.shape[1] != n_out or buf.dtype != self.dtype:
            buf = np.empty((rows, n_out), dtype=self.dtype)
            self._scratch[layer] = buf
        return buf[:rows]


def init_network(
    sizes: Sequence[int],
    family: WeightFamily,
    rng: np.random.Generator,
    init_variance: float = 1.0,
    dtype: np.dtype | type = np.float32,
    **options: Any,
) -> Network:
    """Draw H uniformly with variance ``init_variance / n_in`` per layer; biases 0.

    Parameters
    ----------
    sizes : sequence of int
        (n_0, n_1, …, n_L): inputs, hidden widths, outputs.
    **options
        Further :class:`Network` fields.
    """
    H, b = [], []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        half_width = np.sqrt(3.0) * np.sqrt(init_variance / n_in)  # U(−a, a) has variance a²/3
        if not half_width < np.finfo(dtype).max:  # NaN too; 3·v alone may overflow
            raise ValueError(
                f"init_variance={init_variance:g} is too large: initial weights of "
                f"±{half_width:g} overflow {np.dtype(dtype).name}"
            )
        h = aligned_empty((n_in, n_out), dtype)
        h[...] = rng.uniform(-half_width, half_width, size=(n_in, n_out))  # rounded as astype
        H.append(h)
        b.append(np.zeros(n_out, dtype=dtype))
    return Network(family=family, H=H, b=b, **options)
