"""The forward sums and the backward product of the fused training step, register-blocked for
minibatches of a few samples.

A minibatch of B ≈ 10 samples makes the forward products skinny, (B × n)·(n × m). BLAS packs its
operands for square-ish shapes and ran these at ~40 GFLOP/s against ~59 for this kernel, with M²
formed separately (one thread, 800 × 800 float32, docs/performance.md). The kernel keeps the
accumulators of 5 samples × one strip of columns in registers while it streams down the rows of
M once, squaring M in registers for the variance sum:

    μ[s, k] += Σ_i F[s, i] M[i, k],    σ²[s, k] += Σ_i W[s, i] M[i, k]²

Each output element is summed over i in increasing order, one fused multiply-add at a time,
starting from its value in ``out``, whatever strip, tile or thread it falls in: the results do not
depend on how the columns are split, only on the row blocks (which the caller fixes).

The backward product Δ_{l+1} M_{l+1}ᵀ, (B × m)·(m × n)ᵀ, is a set of dot products along M's
rows: :func:`dot_rows` keeps 5 samples × 2 rows of accumulators in registers (BLAS ran it at
0.5–0.65× that speed; ``benchmarks/archive/micro_vs_blas.py``); rows shorter than two vectors (the
output layer's) are transposed and summed as the forward products are.

Arrays are passed flat (C order) with their row lengths; columns k0:k1 are done in strips of two
vectors, the last strip with masked loads and stores.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from ._simd import (
    VECTOR_BYTES,
    lanes,
    vbload,
    vfma,
    vlane,
    vload,
    vload_part,
    vmul,
    vpair_sums,
    vstore,
    vstore_part,
    vsum,
    vzero,
)  # fmt: skip
from .system import enter_kernel_cache, leave_kernel_cache

enter_kernel_cache()  # numba fixes each function's cache folder when it is decorated

_FM = {"contract"}
_GROUP = 5  # samples per register block: 5 × 2 accumulators + 2 loads + 1 broadcast ≤ 16
#: Whether :func:`accumulate_pair`'s 20 accumulators fit in registers (AVX-512's 32; with AVX2's
#: 16 they spill: 0.82-0.84x the speed of the two sums one after the other, docs/performance.md).
PAIR_IN_REGISTERS = VECTOR_BYTES >= 64
#: Below this row length (the output layer's 10 units, say) :func:`dot_rows` transposes the rows
#: and sums as :func:`accumulate` does: one-vector strips of 10 with a masked tail ran 4× slower.
_NARROW = 16


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, inline="always", cache=True)
def load_strip(a, p, n0, n1, full):  # pragma: no cover - compiled
    """The two vectors of a strip at flat index p of a 1-D array: all lanes (``full``), or the
    first n0 and n1 lanes (masked; the other lanes are 0)."""
    L = lanes(a)
    if full:
        return vload(a, p), vload(a, p + L)
    return vload_part(a, p, n0), vload_part(a, p + L, n1)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, inline="always", cache=True)
def store_strip(a, p, v0, v1, n0, n1, full):  # pragma: no cover - compiled
    """Store a strip's two vectors at flat index p: all lanes, or the first n0 and n1."""
    L = lanes(a)
    if full:
        vstore(a, p, v0)
        vstore(a, p + L, v1)
    else:
        vstore_part(a, p, v0, n0)
        vstore_part(a, p + L, v1, n1)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, inline="always", cache=True)
def _load5(a, o, ld, n0, n1, full):  # pragma: no cover - compiled
    # the strips of five rows of ``a`` (row length ld) from flat index o: a register block's
    # accumulators, loaded once before its loop
    return (
        load_strip(a, o, n0, n1, full),
        load_strip(a, o + ld, n0, n1, full),
        load_strip(a, o + 2 * ld, n0, n1, full),
        load_strip(a, o + 3 * ld, n0, n1, full),
        load_strip(a, o + 4 * ld, n0, n1, full),
    )


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, inline="always", cache=True)
def _store5(a, o, ld, r0, r1, r2, r3, r4, n0, n1, full):  # pragma: no cover - compiled
    # _load5's inverse: each r is a (first vector, second vector) pair
    store_strip(a, o, r0[0], r0[1], n0, n1, full)
    store_strip(a, o + ld, r1[0], r1[1], n0, n1, full)
    store_strip(a, o + 2 * ld, r2[0], r2[1], n0, n1, full)
    store_strip(a, o + 3 * ld, r3[0], r3[1], n0, n1, full)
    store_strip(a, o + 4 * ld, r4[0], r4[1], n0, n1, full)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, inline="always", cache=True)
def _m_strip(M, ldm, rows, sparse, i, k, n0, n1, full, square):  # pragma: no cover - compiled
    # the strip of M's row for coefficient column i (rows[i] when sparse), squared if asked
    j = rows[i] if sparse else i
    m0, m1 = load_strip(M, j * ldm + k, n0, n1, full)
    if square:
        return vmul(m0, m0), vmul(m1, m1)
    return m0, m1


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def _strip5(  # pragma: no cover - compiled
    C, ldc, M, ldm, rows, sparse, i0, i1, k, n0, n1, full, square, out, ldo, s0
):
    # out[s0:s0+5, k:k+2L] += Σ_{i0≤i<i1} C[s, i] · (M[row i, strip] or its square)
    o = s0 * ldo + k
    (a0, b0), (a1, b1), (a2, b2), (a3, b3), (a4, b4) = _load5(out, o, ldo, n0, n1, full)
    c = s0 * ldc
    for i in range(i0, i1):
        m0, m1 = _m_strip(M, ldm, rows, sparse, i, k, n0, n1, full, square)
        x = vbload(C, c + i)
        a0 = vfma(x, m0, a0)
        b0 = vfma(x, m1, b0)
        x = vbload(C, c + ldc + i)
        a1 = vfma(x, m0, a1)
        b1 = vfma(x, m1, b1)
        x = vbload(C, c + 2 * ldc + i)
        a2 = vfma(x, m0, a2)
        b2 = vfma(x, m1, b2)
        x = vbload(C, c + 3 * ldc + i)
        a3 = vfma(x, m0, a3)
        b3 = vfma(x, m1, b3)
        x = vbload(C, c + 4 * ldc + i)
        a4 = vfma(x, m0, a4)
        b4 = vfma(x, m1, b4)
    _store5(out, o, ldo, (a0, b0), (a1, b1), (a2, b2), (a3, b3), (a4, b4), n0, n1, full)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def _strip1(  # pragma: no cover - compiled
    C, ldc, M, ldm, rows, sparse, i0, i1, k, n0, n1, full, square, out, ldo, s
):
    # as _strip5 for one sample s (the samples left over when B is not a multiple of 5)
    o = s * ldo + k
    a0, b0 = load_strip(out, o, n0, n1, full)
    c = s * ldc
    for i in range(i0, i1):
        m0, m1 = _m_strip(M, ldm, rows, sparse, i, k, n0, n1, full, square)
        x = vbload(C, c + i)
        a0 = vfma(x, m0, a0)
        b0 = vfma(x, m1, b0)
    store_strip(out, o, a0, b0, n0, n1, full)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def accumulate(C, M, rows, sparse, i0, i1, k0, k1, square, out):  # pragma: no cover - compiled
    """out[:, k0:k1] += C[:, i0:i1] · M[rows, k0:k1] (``square``: M² instead of M).

    C (B, ≥ i1) and out (B, ≥ k1), M (n, ≥ k1), all C-contiguous. The rows of M are
    ``rows[i0:i1]`` when ``sparse`` (C then holds the compacted coefficients, column i for row
    ``rows[i]``), else i0:i1.
    """
    B = out.shape[0]
    ldc, ldm, ldo = C.shape[1], M.shape[1], out.shape[1]
    Cf, Mf, of = C.reshape(-1), M.reshape(-1), out.reshape(-1)
    L = lanes(Mf)
    for k in range(k0, k1, 2 * L):
        n = min(k1 - k, 2 * L)
        full = n == 2 * L
        n0, n1 = min(n, L), max(n - L, 0)
        s0 = 0
        while s0 + _GROUP <= B:
            _strip5(Cf, ldc, Mf, ldm, rows, sparse, i0, i1, k, n0, n1, full, square, of, ldo, s0)
            s0 += _GROUP
        for s in range(s0, B):
            _strip1(Cf, ldc, Mf, ldm, rows, sparse, i0, i1, k, n0, n1, full, square, of, ldo, s)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def _pair5(  # pragma: no cover - compiled
    F, W, ldc, M, ldm, rows, sparse, i0, i1, k, n0, n1, full, mu, var, ldo, s0
):
    # _strip5 for F·M into mu and W·M² into var at once: each strip of M is loaded once for both
    # sums, and every element gets the same fused multiply-adds in the same order as there.
    o = s0 * ldo + k
    (a0, b0), (a1, b1), (a2, b2), (a3, b3), (a4, b4) = _load5(mu, o, ldo, n0, n1, full)
    (c0, d0), (c1, d1), (c2, d2), (c3, d3), (c4, d4) = _load5(var, o, ldo, n0, n1, full)
    c = s0 * ldc
    for i in range(i0, i1):
        m0, m1 = _m_strip(M, ldm, rows, sparse, i, k, n0, n1, full, False)
        q0, q1 = vmul(m0, m0), vmul(m1, m1)
        x = vbload(F, c + i)
        a0 = vfma(x, m0, a0)
        b0 = vfma(x, m1, b0)
        x = vbload(W, c + i)
        c0 = vfma(x, q0, c0)
        d0 = vfma(x, q1, d0)
        x = vbload(F, c + ldc + i)
        a1 = vfma(x, m0, a1)
        b1 = vfma(x, m1, b1)
        x = vbload(W, c + ldc + i)
        c1 = vfma(x, q0, c1)
        d1 = vfma(x, q1, d1)
        x = vbload(F, c + 2 * ldc + i)
        a2 = vfma(x, m0, a2)
        b2 = vfma(x, m1, b2)
        x = vbload(W, c + 2 * ldc + i)
        c2 = vfma(x, q0, c2)
        d2 = vfma(x, q1, d2)
        x = vbload(F, c + 3 * ldc + i)
        a3 = vfma(x, m0, a3)
        b3 = vfma(x, m1, b3)
        x = vbload(W, c + 3 * ldc + i)
        c3 = vfma(x, q0, c3)
        d3 = vfma(x, q1, d3)
        x = vbload(F, c + 4 * ldc + i)
        a4 = vfma(x, m0, a4)
        b4 = vfma(x, m1, b4)
        x = vbload(W, c + 4 * ldc + i)
        c4 = vfma(x, q0, c4)
        d4 = vfma(x, q1, d4)
    _store5(mu, o, ldo, (a0, b0), (a1, b1), (a2, b2), (a3, b3), (a4, b4), n0, n1, full)
    _store5(var, o, ldo, (c0, d0), (c1, d1), (c2, d2), (c3, d3), (c4, d4), n0, n1, full)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def _pair5_one(  # pragma: no cover - compiled
    F, W, ldc, M, ldm, rows, sparse, i0, i1, k, n0, mu, var, ldo, s0
):
    # _pair5 for a strip of n0 ≤ lanes columns (a layer's last, narrow strip): one vector per
    # sample, half the multiply-adds, the same bits in those columns. A separate function: as a
    # branch inside _pair5 it slowed _pair5's own loop to 0.76× (its registers spilled).
    o = s0 * ldo + k
    a0, a1 = vload_part(mu, o, n0), vload_part(mu, o + ldo, n0)
    a2, a3 = vload_part(mu, o + 2 * ldo, n0), vload_part(mu, o + 3 * ldo, n0)
    a4 = vload_part(mu, o + 4 * ldo, n0)
    c0, c1 = vload_part(var, o, n0), vload_part(var, o + ldo, n0)
    c2, c3 = vload_part(var, o + 2 * ldo, n0), vload_part(var, o + 3 * ldo, n0)
    c4 = vload_part(var, o + 4 * ldo, n0)
    c = s0 * ldc
    for i in range(i0, i1):
        j = rows[i] if sparse else i
        m0 = vload_part(M, j * ldm + k, n0)
        q0 = vmul(m0, m0)
        a0 = vfma(vbload(F, c + i), m0, a0)
        c0 = vfma(vbload(W, c + i), q0, c0)
        a1 = vfma(vbload(F, c + ldc + i), m0, a1)
        c1 = vfma(vbload(W, c + ldc + i), q0, c1)
        a2 = vfma(vbload(F, c + 2 * ldc + i), m0, a2)
        c2 = vfma(vbload(W, c + 2 * ldc + i), q0, c2)
        a3 = vfma(vbload(F, c + 3 * ldc + i), m0, a3)
        c3 = vfma(vbload(W, c + 3 * ldc + i), q0, c3)
        a4 = vfma(vbload(F, c + 4 * ldc + i), m0, a4)
        c4 = vfma(vbload(W, c + 4 * ldc + i), q0, c4)
    vstore_part(mu, o, a0, n0)
    vstore_part(mu, o + ldo, a1, n0)
    vstore_part(mu, o + 2 * ldo, a2, n0)
    vstore_part(mu, o + 3 * ldo, a3, n0)
    vstore_part(mu, o + 4 * ldo, a4, n0)
    vstore_part(var, o, c0, n0)
    vstore_part(var, o + ldo, c1, n0)
    vstore_part(var, o + 2 * ldo, c2, n0)
    vstore_part(var, o + 3 * ldo, c3, n0)
    vstore_part(var, o + 4 * ldo, c4, n0)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def accumulate_pair(F, W, M, rows, sparse, i0, i1, k0, k1, mu, var):  # pragma: no cover
    """mu[:, k0:k1] += F[:, i0:i1] · M[rows, k0:k1] and var[:, k0:k1] += W[:, i0:i1] · M²[…].

    The same bits as two :func:`accumulate` calls (``square`` False, then True) with one read of
    M instead of two. Its 5 samples × 2 vectors × 2 sums are 20 accumulators, which fit in the
    32 registers of AVX-512 but not in AVX2's 16 (:data:`PAIR_IN_REGISTERS`). F, W (B, ≥ i1),
    same shape; mu, var (B, ≥ k1), same shape; M, rows, sparse as in :func:`accumulate`.
    """
    B = mu.shape[0]
    ldc, ldm, ldo = F.shape[1], M.shape[1], mu.shape[1]
    Ff, Wf, Mf = F.reshape(-1), W.reshape(-1), M.reshape(-1)
    muf, varf = mu.reshape(-1), var.reshape(-1)
    L = lanes(Mf)
    for k in range(k0, k1, 2 * L):
        n = min(k1 - k, 2 * L)
        full = n == 2 * L
        n0, n1 = min(n, L), max(n - L, 0)
        s0 = 0
        while s0 + _GROUP <= B:
            if n1 == 0:
                _pair5_one(Ff, Wf, ldc, Mf, ldm, rows, sparse, i0, i1, k, n0, muf, varf, ldo, s0)
            else:
                _pair5(
                    Ff, Wf, ldc, Mf, ldm, rows, sparse, i0, i1, k, n0, n1, full, muf, varf, ldo,
                    s0,
                )  # fmt: skip
            s0 += _GROUP
        for s in range(s0, B):
            _strip1(Ff, ldc, Mf, ldm, rows, sparse, i0, i1, k, n0, n1, full, False, muf, ldo, s)
            _strip1(Wf, ldc, Mf, ldm, rows, sparse, i0, i1, k, n0, n1, full, True, varf, ldo, s)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, inline="always", cache=True)
def _ld1(a, p, w, part):  # pragma: no cover - compiled
    # one vector at flat index p: all lanes, or (part) the first w
    return vload_part(a, p, w) if part else vload(a, p)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, inline="always", cache=True)
def _tree4(v0, v1, v2, v3):  # pragma: no cover - compiled
    # lane j = vsum(vj), for vectors of 4 lanes
    return vpair_sums(vpair_sums(v0, v1), vpair_sums(v2, v3))


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, inline="always", cache=True)
def _tree8(v0, v1, v2, v3, v4, v5, v6, v7):  # pragma: no cover - compiled
    # lane j = vsum(vj), for vectors of 8 lanes
    return vpair_sums(
        vpair_sums(vpair_sums(v0, v1), vpair_sums(v2, v3)),
        vpair_sums(vpair_sums(v4, v5), vpair_sums(v6, v7)),
    )


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, inline="always", cache=True)
def _sums10(L, z, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9):  # pragma: no cover - compiled
    # vsum(vk) of ten vectors of L lanes in lane k % L of the (k // L)-th of three vectors, z
    # the zero vector. The lanes of all ten are summed level by level together, each pair
    # added as vsum adds it (so the same bits), in vector operations: vsum's scalar adds and
    # lane extractions made the backward product 1.2-1.4x slower (docs/performance.md).
    if L == 16:
        t = vpair_sums(_tree8(v0, v1, v2, v3, v4, v5, v6, v7), _tree8(v8, v9, z, z, z, z, z, z))
        return t, z, z
    if L == 8:
        return _tree8(v0, v1, v2, v3, v4, v5, v6, v7), _tree8(v8, v9, z, z, z, z, z, z), z
    return _tree4(v0, v1, v2, v3), _tree4(v4, v5, v6, v7), _tree4(v8, v9, z, z)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def _dots5x2(U, ldu, M, ldm, i, s0, n, out, ldo):  # pragma: no cover - compiled
    # out[s0 + q, i + r] = U[s0 + q] · M[i + r] for q < 5, r < 2: 10 independent accumulators
    # over strips of one vector (the last one masked), then each one's lanes summed.
    L = lanes(M)
    z = vzero(M)
    a0, a1, a2, a3, a4 = z, z, z, z, z
    e0, e1, e2, e3, e4 = z, z, z, z, z
    u, pm = s0 * ldu, i * ldm
    tail = n - n % L
    for k in range(0, n, L):
        part, w = k >= tail, n - k
        m0 = _ld1(M, pm + k, w, part)
        m1 = _ld1(M, pm + ldm + k, w, part)
        x = _ld1(U, u + k, w, part)
        a0 = vfma(x, m0, a0)
        e0 = vfma(x, m1, e0)
        x = _ld1(U, u + ldu + k, w, part)
        a1 = vfma(x, m0, a1)
        e1 = vfma(x, m1, e1)
        x = _ld1(U, u + 2 * ldu + k, w, part)
        a2 = vfma(x, m0, a2)
        e2 = vfma(x, m1, e2)
        x = _ld1(U, u + 3 * ldu + k, w, part)
        a3 = vfma(x, m0, a3)
        e3 = vfma(x, m1, e3)
        x = _ld1(U, u + 4 * ldu + k, w, part)
        a4 = vfma(x, m0, a4)
        e4 = vfma(x, m1, e4)
    t0, t1, t2 = _sums10(L, z, a0, e0, a1, e1, a2, e2, a3, e3, a4, e4)
    o = s0 * ldo + i
    for k in range(10):  # unrolled by LLVM: the lanes are constants
        t = t0 if k < L else (t1 if k < 2 * L else t2)
        out[o + (k // 2) * ldo + k % 2] = vlane(t, k % L)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def dot(A, pa, C, pc, n):  # pragma: no cover - compiled
    """Σ_k A[pa + k]·C[pc + k] over k < n (flat arrays): per vector lane in order over strips of
    one vector (the last one masked), then the lanes pairwise. A strict left-to-right sum would
    wait on each addition's latency (~4 cycles per element): this one does a vector per cycle."""
    L = lanes(C)
    a = vzero(C)
    tail = n - n % L
    for k in range(0, n, L):
        part, w = k >= tail, n - k
        a = vfma(_ld1(A, pa + k, w, part), _ld1(C, pc + k, w, part), a)
    return vsum(a)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def _dot1(U, ldu, M, ldm, i, s, n, out, ldo):  # pragma: no cover - compiled
    # out[s, i] = U[s] · M[i], the same sum as _dots5x2 forms (for the leftover rows/samples)
    out[s * ldo + i] = dot(U, s * ldu, M, i * ldm, n)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def _dot_rows_narrow(U, M, i0, i1, out):  # pragma: no cover - compiled
    # out[:, i0:i1] = U · M[i0:i1]ᵀ for short rows: Mᵀ's columns i0:i1 (the rest unused), then
    # the sums over j in order from zero, vectorised along i. Each element is the same sum
    # whatever i0, i1 (the threads' tiles).
    n = U.shape[1]
    MT = np.empty((n, M.shape[0]), M.dtype)
    for i in range(i0, i1):
        for j in range(n):
            MT[j, i] = M[i, j]
    out[:, i0:i1] = 0
    accumulate(U, MT, np.empty(0, np.int64), False, 0, n, i0, i1, False, out)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def dot_rows(U, M, i0, i1, out):  # pragma: no cover - compiled
    """out[:, i] = U · M[i] for i0 ≤ i < i1 (the backward product Δ_{l+1} M_{l+1}ᵀ, by rows).

    U (B, n), M (≥ i1, n), out (B, ≥ i1), C-contiguous. Each element is one fixed sum (per lane
    in order over the strips of n, then the lanes pairwise; rows shorter than 16: over n in
    order), whatever i0, i1 and B: splitting the rows over threads gives the same bits. BLAS ran
    this transposed product at 0.5–0.65× the speed (800 × 800, B = 10, one thread,
    docs/performance.md).
    """
    B, n = U.shape
    if n < _NARROW:
        _dot_rows_narrow(U, M, i0, i1, out)
        return
    ldm, ldo = M.shape[1], out.shape[1]
    Uf, Mf, of = U.reshape(-1), M.reshape(-1), out.reshape(-1)
    pairs_end = i0 + (i1 - i0) // 2 * 2
    groups_end = B // _GROUP * _GROUP
    for i in range(i0, pairs_end, 2):
        for s0 in range(0, groups_end, _GROUP):
            _dots5x2(Uf, n, Mf, ldm, i, s0, n, of, ldo)
        for s in range(groups_end, B):
            _dot1(Uf, n, Mf, ldm, i, s, n, of, ldo)
            _dot1(Uf, n, Mf, ldm, i + 1, s, n, of, ldo)
    for i in range(pairs_end, i1):
        for s in range(B):
            _dot1(Uf, n, Mf, ldm, i, s, n, of, ldo)


leave_kernel_cache()
