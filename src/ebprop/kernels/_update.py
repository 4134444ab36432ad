"""The update of real weights in register tiles (the fused training step, issue 13).

    H[row i] ← clip(ρ H[row i] + Σ_s U[s, i] D[s])        U = ⟨v⟩ (B, n_in), D = ½Δ (B, n)

For real weights M is H, so after the product only a clip is left. BLAS forms the product in
place and a second pass over the block clips it; here a tile of 6 rows × 2 vectors of increments
stays in registers while the B samples stream by, and each row is finished (ρH rounded, the
increment added, the clip) while it is in L1: no second pass. On an Emerald Rapids core (AVX-512)
the same bits as OpenBLAS's gemm with beta = ρ = 1, 1.08–1.17× its speed with the clip; binary
weights, whose finish needs tanh, ran at 0.76–1.10× in such tiles and keep BLAS
(docs/performance.md, decision 5).
"""

from __future__ import annotations

import numba as nb

from ..core.update import PARAMETER_BOUND
from ._micro import load_strip, store_strip
from ._simd import VECTOR_BYTES, lanes, vbload, vfma, vmul, vsplat, vzero
from ._vecmath import vclip
from .system import enter_kernel_cache, leave_kernel_cache

enter_kernel_cache()  # numba fixes each function's cache folder when it is decorated

__all__ = ["UPDATE_IN_TILES", "update_clip"]

_FM = {"contract"}
_ROWS = 6  # rows per tile: 6 × 2 accumulators + 2 loads + 1 broadcast ≤ 16 registers
#: Whether real weights' update runs in :func:`update_clip`'s tiles rather than BLAS and a clip
#: pass: measured faster with AVX-512 only. Compiled for AVX2 on the same (AVX-512) core it ran the
#: whole loop at 0.82-0.84x; there OpenBLAS kept its 512-bit kernels, so a true AVX2 machine is
#: untested and keeps BLAS (docs/performance.md, decision 5).
UPDATE_IN_TILES = VECTOR_BYTES >= 64


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, inline="always", cache=True)
def _settle(H, p, a0, a1, n0, n1, full, rv, one, bound):  # pragma: no cover - compiled
    # the strip of H at p ← clip(ρH + increment a): ρH rounded, then the increment added (the
    # core's H *= ρ; H += increment), then clipped
    h0, h1 = load_strip(H, p, n0, n1, full)
    x0 = vclip(vfma(a0, one, vmul(h0, rv)), bound)
    x1 = vclip(vfma(a1, one, vmul(h1, rv)), bound)
    store_strip(H, p, x0, x1, n0, n1, full)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, inline="always", cache=True)
def _update6(  # pragma: no cover - compiled
    U, ldu, B, D, ldd, H, ldh, rows, sparse, i, k, n0, n1, full, rv, one, bound
):
    # rows i … i+5 of the update, one strip: 6 rows × 2 vectors of increments in registers
    # while the B samples stream by (U's 6 inputs broadcast, D's strip loaded once per sample)
    z = vzero(H)
    a0, a1, b0, b1, c0, c1 = z, z, z, z, z, z
    d0, d1, e0, e1, f0, f1 = z, z, z, z, z, z
    for s in range(B):
        q0, q1 = load_strip(D, s * ldd + k, n0, n1, full)
        u = s * ldu + i
        x = vbload(U, u)
        a0 = vfma(x, q0, a0)
        a1 = vfma(x, q1, a1)
        x = vbload(U, u + 1)
        b0 = vfma(x, q0, b0)
        b1 = vfma(x, q1, b1)
        x = vbload(U, u + 2)
        c0 = vfma(x, q0, c0)
        c1 = vfma(x, q1, c1)
        x = vbload(U, u + 3)
        d0 = vfma(x, q0, d0)
        d1 = vfma(x, q1, d1)
        x = vbload(U, u + 4)
        e0 = vfma(x, q0, e0)
        e1 = vfma(x, q1, e1)
        x = vbload(U, u + 5)
        f0 = vfma(x, q0, f0)
        f1 = vfma(x, q1, f1)
    _settle(H, (rows[i] if sparse else i) * ldh + k, a0, a1, n0, n1, full, rv, one, bound)
    _settle(H, (rows[i + 1] if sparse else i + 1) * ldh + k, b0, b1, n0, n1, full, rv, one, bound)
    _settle(H, (rows[i + 2] if sparse else i + 2) * ldh + k, c0, c1, n0, n1, full, rv, one, bound)
    _settle(H, (rows[i + 3] if sparse else i + 3) * ldh + k, d0, d1, n0, n1, full, rv, one, bound)
    _settle(H, (rows[i + 4] if sparse else i + 4) * ldh + k, e0, e1, n0, n1, full, rv, one, bound)
    _settle(H, (rows[i + 5] if sparse else i + 5) * ldh + k, f0, f1, n0, n1, full, rv, one, bound)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, inline="always", cache=True)
def _update1(  # pragma: no cover - compiled
    U, ldu, B, D, ldd, H, ldh, rows, sparse, i, k, n0, n1, full, rv, one, bound
):
    # _update6 for one row (the rows left over): the same multiply-adds in the same order
    z = vzero(H)
    a0, a1 = z, z
    for s in range(B):
        q0, q1 = load_strip(D, s * ldd + k, n0, n1, full)
        x = vbload(U, s * ldu + i)
        a0 = vfma(x, q0, a0)
        a1 = vfma(x, q1, a1)
    _settle(H, (rows[i] if sparse else i) * ldh + k, a0, a1, n0, n1, full, rv, one, bound)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def update_clip(U, D, H, rows, sparse, i0, i1, rho):  # pragma: no cover - compiled
    """H[row i] ← clip(ρ H[row i] + Σ_s U[s, i] D[s]) for i0 ≤ i < i1: the update of real
    weights (M is H), with no pass over H after the product.

    U (B, ≥ i1) the inputs ⟨v⟩ (sparse: compacted, column i for row ``rows[i]``; else row i),
    D (B, n) = ½Δ, H (n_in, n), C-contiguous. Each increment is Σ_s in order from zero, one
    fused multiply-add at a time, then added to ρH rounded: on an Emerald Rapids core the same
    bits as OpenBLAS's gemm (beta = ρ = 1) followed by the clip, and 1.08–1.17× its speed
    (784 × 200, 784 × 500, 800 × 800 float32, docs/performance.md, decision 5). Binary weights
    keep BLAS and the clip-and-tanh pass: with tanh in this kernel's tiles they ran at
    0.76–1.10×. Tiles of 6 rows × 2 vectors, rows outer: whole rows are finished while in L1.
    The fused pass calls it only where :data:`UPDATE_IN_TILES`.
    """
    B, n = D.shape
    ldu, ldd, ldh = U.shape[1], D.shape[1], H.shape[1]
    Uf, Df, Hf = U.reshape(-1), D.reshape(-1), H.reshape(-1)
    L = lanes(Hf)
    dt = H.dtype.type
    rv, one = vsplat(dt(rho)), vsplat(dt(1.0))
    bound = dt(PARAMETER_BOUND)
    i = i0
    while i < i1:
        tile = i + _ROWS <= i1
        for k in range(0, n, 2 * L):
            m = min(n - k, 2 * L)
            full = m == 2 * L
            n0, n1 = min(m, L), max(m - L, 0)
            if tile:
                _update6(Uf, ldu, B, Df, ldd, Hf, ldh, rows, sparse, i, k, n0, n1, full, rv, one,
                         bound)  # fmt: skip
            else:
                _update1(Uf, ldu, B, Df, ldd, Hf, ldh, rows, sparse, i, k, n0, n1, full, rv, one,
                         bound)  # fmt: skip
        i += _ROWS if tile else 1


leave_kernel_cache()
