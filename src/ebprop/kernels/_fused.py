"""Compiled kernels of the fused training step (numba). Same equations as :mod:`ebprop.core`.

Layout as in the core: layer l has H, M, M² of shape (n_in, n_out); activations are (B, units).
Buffers are padded to the batch size B: a ragged last minibatch has zero inputs in its spare
rows and Δ = 0 there, so those rows add exact zeros to every sum.

One pass over each layer per minibatch t does the update of t and the forward pass of t + 1,
row block by row block, so that each block of H is read and written once and the new M is
multiplied into the next minibatch's sums while the block is still in cache:

    H ← clip(ρ H + ⟨v⟩ᵀ (½Δ)),  M = tanh H (binary) or H (real)                   (per block)
    μ-sum += m_{t+1} M_block,    σ²-sum += w_{t+1} (M_block)²                        (per block)

M² is never stored during the pass: the forward kernel squares each strip of M in registers (M2
is squared once when the call returns), saving one array written per layer per minibatch.

For binary weights the update is a BLAS call on the block that forms ρH + ⟨v⟩ᵀ½Δ in place
(``_blas.gemm`` with beta = ρ; a sparse first layer's scattered rows go through a scratch block),
then one compiled loop clips H and writes M = tanh H. For real weights (M is H), where the CPU has
AVX-512, a register-tiled kernel forms the increment and clips each row while it is in L1, with no
second pass over H (``_update.update_clip``; 1.08–1.17× BLAS and the clip, while with tanh in its
tiles the binary update ran at 0.76–1.10×, docs/performance.md, decision 5). The forward sums are
the register-blocked kernels of :mod:`._micro`, which beat BLAS on these skinny products. The
clip-and-tanh loop is written in explicit vectors of the CPU's width for float32
(``_vecmath.vtanh32``) and left to LLVM's vectoriser for float64 (``_vecmath.tanh64``). Threads
split each layer's input rows into fixed tiles: a tile updates its rows of H and M and sums their
part of the forward sums into its own buffer, and the parts are added in tile order afterwards (the
backward pass splits each layer's units). No two threads write the same element and the sums' order
is fixed by the number of tiles, so results do not depend on which thread ran which tile.

The kernels on the activations (B, units) — loading a minibatch, z, σ√c and ⟨v⟩ from the sums,
the backward pass's Δ — are in :mod:`._activations`.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba.extending import overload

from ..core.update import PARAMETER_BOUND
from ._blas import gemm
from ._micro import PAIR_IN_REGISTERS, accumulate, accumulate_pair
from ._simd import lanes, vfma, vload, vload_part, vsplat, vstore, vstore_part
from ._update import UPDATE_IN_TILES, update_clip
from ._vecmath import tanh, vclip, vtanh32
from .system import enter_kernel_cache, leave_kernel_cache

enter_kernel_cache()  # numba fixes each function's cache folder when it is decorated

_FM = {"contract"}  # allow FMA contraction only; no reassociation (results stay reproducible)


def _refresh_row(h_row, s_row, m_row, r, bound, affine, binary):  # pragma: no cover
    """H ← clip(ρH + S) (``affine``) or clip(H) over one contiguous row; binary: M = tanh H.

    Compiled-code only (an overload picks by dtype). float32: explicit vectors of the CPU's
    width (:func:`._vecmath.vtanh32`); LLVM's vectoriser keeps the plain loop to 256 bits on
    AVX-512 server cores. On an Emerald Rapids core this one clipped an 800 × 800 binary layer
    and formed its M in 225 µs against the loop's 272 (a 256 KiB block: 21 against 29 µs;
    real weights, the clip alone: the same speed, bound by L2), docs/performance.md, decision 2.
    The same bits as the plain loop, which float64 keeps."""
    raise NotImplementedError("only callable from numba-compiled code")


@overload(_refresh_row, fastmath=_FM, error_model="numpy")
def _refresh_row_typed(h_row, s_row, m_row, r, bound, affine, binary):  # pragma: no cover
    if h_row.dtype == nb.types.float32:

        def vec32(h_row, s_row, m_row, r, bound, affine, binary):
            # whole vectors, then the tail with masked loads and stores. The body is written out
            # twice: an inlined helper taking the arrays left reference counting in the loop.
            n, L = h_row.shape[0], lanes(h_row)
            rv = vsplat(r)
            tail = n - n % L
            for k in range(0, tail, L):
                x = vload(h_row, k)
                if affine:
                    x = vfma(x, rv, vload(s_row, k))
                x = vclip(x, bound)
                vstore(h_row, k, x)
                if binary:
                    vstore(m_row, k, vtanh32(x))
            if tail < n:
                w = n - tail
                x = vload_part(h_row, tail, w)
                if affine:
                    x = vfma(x, rv, vload_part(s_row, tail, w))
                x = vclip(x, bound)
                vstore_part(h_row, tail, x, w)
                if binary:
                    vstore_part(m_row, tail, vtanh32(x), w)

        return vec32

    def plain(h_row, s_row, m_row, r, bound, affine, binary):
        for k in range(h_row.shape[0]):
            h = h_row[k] * r + s_row[k] if affine else h_row[k]
            h = min(max(h, -bound), bound)
            h_row[k] = h
            if binary:
                m_row[k] = tanh(h)

    return plain


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, inline="always", cache=True)
def _row_update(h_row, s_row, m_row, r, bound, binary):  # pragma: no cover - compiled
    # H ← clip(ρH + S); binary: M = tanh H (real weights: M is H). M² is not stored here.
    _refresh_row(h_row, s_row, m_row, r, bound, True, binary)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, inline="always", cache=True)
def _row_clip(h_row, m_row, bound, binary):  # pragma: no cover - compiled
    # H ← clip(H) after BLAS has formed ρH + increment in place; binary: M = tanh H. (No S: the
    # row stands in for it, and ρ = 1 for it, unused when not affine.)
    _refresh_row(h_row, h_row, m_row, h_row.dtype.type(1.0), bound, False, binary)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, inline="always", cache=True)
def _square_row(m_row, out_row):  # pragma: no cover - compiled
    for k in range(m_row.shape[0]):
        out_row[k] = m_row[k] * m_row[k]


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def _moments_range(h, m, m2, k0, k1, binary, square):  # pragma: no cover - compiled
    # elements k0:k1 of the flat arrays: M = tanh H (binary), M² = M·M (square); slices from
    # index 0 so that the loops vectorise (as _pdf_factor's)
    hs, ms, m2s = h[k0:k1], m[k0:k1], m2[k0:k1]
    if binary:
        for k in range(hs.shape[0]):
            ms[k] = tanh(hs[k])
    if square:
        _square_row(ms, m2s)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def moments(H, M, M2, binary, square=True):  # pragma: no cover - compiled
    """M = tanh H (binary; real weights: M is H) and, if ``square``, M² = M·M, whole arrays."""
    h, m, m2 = H.reshape(-1), M.reshape(-1), M2.reshape(-1)
    _moments_range(h, m, m2, 0, h.shape[0], binary, square)


@nb.njit(nogil=True, parallel=True, cache=True)
def moments_parallel(H, M, M2, binary, square, n_tiles):  # pragma: no cover - compiled
    """As :func:`moments`, the elements split into ``n_tiles`` ranges, one thread each. Each
    element is computed alone, so the bits do not depend on the split."""
    h, m, m2 = H.reshape(-1), M.reshape(-1), M2.reshape(-1)
    n = h.shape[0]
    for t in nb.prange(n_tiles):
        _moments_range(h, m, m2, (t * n) // n_tiles, ((t + 1) * n) // n_tiles, binary, square)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def clip_block(H, M, r0, r1, k0, k1, binary):  # pragma: no cover - compiled
    """Rows r0:r1, columns k0:k1: H ← clip(H), then M = ⟨W⟩ (binary; real: M is H)."""
    bound = H.dtype.type(PARAMETER_BOUND)
    if k0 == 0 and k1 == H.shape[1]:
        _row_clip(H[r0:r1].reshape(-1), M[r0:r1].reshape(-1), bound, binary)  # contiguous
        return
    for j in range(r0, r1):
        _row_clip(H[j, k0:k1], M[j, k0:k1], bound, binary)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def refresh_rows(H, M, S, rows, i0, i1, k0, k1, rho, binary):  # pragma: no cover - compiled
    """Rows ``rows[i0:i1]``, columns k0:k1: H ← clip(ρH + S), then M = ⟨W⟩ (binary; real: M
    is H). ``S`` holds row i's increment ⟨v⟩ᵀ(½Δ) at [i − i0, 0:k1−k0] (the sparse path, whose
    rows are not contiguous; dense blocks are formed in place by BLAS, :func:`clip_block`)."""
    bound = H.dtype.type(PARAMETER_BOUND)
    r = H.dtype.type(rho)
    for i in range(i0, i1):
        j = rows[i]
        _row_update(H[j, k0:k1], S[i - i0, : k1 - k0], M[j, k0:k1], r, bound, binary)


@nb.njit(nogil=True, cache=True)
def _list_range(rows, n, j0, j1):  # pragma: no cover - compiled
    # [a, b): the entries of the ascending list rows[:n] that lie in [j0, j1)
    a = np.searchsorted(rows[:n], j0)
    b = np.searchsorted(rows[:n], j1)
    return a, b


@nb.njit(nogil=True, inline="always", cache=True)
def _forward_sums(F, W, M, rows, sparse, i0, i1, need_var, mu, var):  # pragma: no cover
    # μ-sum += F·M[rows i0:i1] and (need_var) σ²-sum += W·M², all columns: in one read of M where
    # the 20 accumulators fit in registers (AVX-512), else one sum after the other. Same bits.
    n_out = M.shape[1]
    if need_var and PAIR_IN_REGISTERS:
        accumulate_pair(F, W, M, rows, sparse, i0, i1, 0, n_out, mu, var)
        return
    accumulate(F, M, rows, sparse, i0, i1, 0, n_out, False, mu)
    if need_var:
        accumulate(W, M, rows, sparse, i0, i1, 0, n_out, True, var)


@nb.njit(nogil=True, cache=True)
def layer_tile(  # pragma: no cover - compiled
    H, M, binary, rho, block_rows,
    update, U, D, upd_rows, n_upd,
    forward, F, W, need_var, fwd_rows, n_fwd, mu, var,
    S, j0, j1, blas,
):  # fmt: skip
    """Update and/or forward pass of one layer over its input rows j0:j1 (every column).

    update : apply H ← ρH + Uᵀ ½Δ, U (B, n_in) the layer's inputs ⟨v⟩ as they are (BLAS
        reads them transposed), D (B, n_out) = ½Δ. ``upd_rows[:n_upd]`` (ascending) lists the
        rows to update when n_upd ≥ 0 (sparse inputs: the other rows have zero input and ρ = 1,
        so their increment is exactly 0; U then holds the compacted columns, column i for
        ``upd_rows[i]``); n_upd < 0: all.
    forward : mu = F M[j0:j1], var = W M[j0:j1]² (F, W (B, n_in); mu, var (B, n_out) this
        tile's own sums); ``fwd_rows[:n_fwd]`` as above for F's non-zero columns (the compacted
        F, W then hold only those columns).
    S : scratch (block_rows, n_out) for the sparse update's increment (unused where real
    weights take :func:`._update.update_clip`'s tiles). blas : :data:`._blas.GEMM_ADDRESSES`.
    M² is never read from memory: the forward kernel squares M in registers. A tile reads and
    writes only rows j0:j1 of H and M, so tiles that cover disjoint rows can run at the same
    time (each with its own mu, var, S).
    """
    n_out = H.shape[1]
    sparse_upd = update and n_upd >= 0
    sparse_fwd = forward and n_fwd >= 0
    # the update through BLAS (and a clip, or clip and tanh, pass), or in register tiles (real
    # weights with AVX-512, ``_update``)
    by_blas = binary or not UPDATE_IN_TILES
    if forward:
        mu[:] = 0
        if need_var:
            var[:] = 0
    if sparse_upd:
        a, b = _list_range(upd_rows, n_upd, j0, j1)
        for i0 in range(a, b, block_rows):
            i1 = min(i0 + block_rows, b)
            if by_blas:
                gemm(U[:, i0:i1], D, S[: i1 - i0], 0.0, True, False, blas)
                refresh_rows(H, M, S, upd_rows, i0, i1, 0, n_out, rho, binary)
            else:  # real weights: the register-tiled update, no scratch (``_update``)
                update_clip(U, D, H, upd_rows, True, i0, i1, rho)
    if (update and not sparse_upd) or (forward and not sparse_fwd):
        # Dense: each block is updated, then multiplied into the next minibatch while in cache.
        for r0 in range(j0, j1, block_rows):
            r1 = min(r0 + block_rows, j1)
            if update and not sparse_upd:
                if by_blas:
                    # ρH + ⟨v⟩ᵀ½Δ formed by BLAS in place (beta = ρ), then clipped, M refreshed
                    gemm(U[:, r0:r1], D, H[r0:r1], rho, True, False, blas)
                    clip_block(H, M, r0, r1, 0, n_out, binary)
                else:
                    # ρH rounded, then the sum added (the core's H *= ρ; H += increment) and
                    # clipped, in register tiles
                    update_clip(U, D, H, upd_rows, False, r0, r1, rho)
            if forward and not sparse_fwd:
                _forward_sums(F, W, M, fwd_rows, False, r0, r1, need_var, mu, var)
    # After the tile's rows are updated: the next minibatch's sums over its non-zero inputs only.
    if sparse_fwd:
        # F, W hold the compacted coefficients: column i for M's row fwd_rows[i].
        a, b = _list_range(fwd_rows, n_fwd, j0, j1)
        for i0 in range(a, b, block_rows):
            i1 = min(i0 + block_rows, b)
            _forward_sums(F, W, M, fwd_rows, True, i0, i1, need_var, mu, var)


@nb.njit(nogil=True, cache=True)
def _tile(  # pragma: no cover - compiled
    t, n_tiles, H, M, binary, rho, block_rows, update, U, D, upd_rows, n_upd,
    forward, F, W, need_var, fwd_rows, n_fwd, mu, var, S, parts, blas,
):  # fmt: skip
    # Tile t of n_tiles: rows (t·n_in) // n_tiles onwards; tile 0 sums into mu, var, the others
    # into their own parts[t − 1] (0: μ, 1: σ²), added in tile order by _add_parts.
    n_in = H.shape[0]
    j0, j1 = (t * n_in) // n_tiles, ((t + 1) * n_in) // n_tiles
    out_mu, out_var = (mu, var) if t == 0 else (parts[t - 1, 0], parts[t - 1, 1])
    layer_tile(
        H, M, binary, rho, block_rows, update, U, D, upd_rows, n_upd,
        forward, F, W, need_var, fwd_rows, n_fwd, out_mu, out_var, S[t], j0, j1, blas,
    )  # fmt: skip


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def _add_parts(mu, var, need_var, parts):  # pragma: no cover - compiled
    # mu += parts[0, 0] + parts[1, 0] + …, one tile after the other (a fixed order)
    for p in range(parts.shape[0]):
        for s in range(mu.shape[0]):
            for k in range(mu.shape[1]):
                mu[s, k] += parts[p, 0, s, k]
                if need_var:
                    var[s, k] += parts[p, 1, s, k]


@nb.njit(nogil=True, cache=True)
def layer_pass_serial(  # pragma: no cover - compiled
    H, M, binary, rho, block_rows, update, U, D, upd_rows, n_upd,
    forward, F, W, need_var, fwd_rows, n_fwd, mu, var, S, parts, blas,
):  # fmt: skip
    """:func:`layer_tile` over the row tiles (S.shape[0] of them), one after the other; the
    same bits as :func:`layer_pass_parallel` with as many tiles."""
    n_tiles = S.shape[0]
    for t in range(n_tiles):
        _tile(
            t, n_tiles, H, M, binary, rho, block_rows, update, U, D, upd_rows, n_upd,
            forward, F, W, need_var, fwd_rows, n_fwd, mu, var, S, parts, blas,
        )  # fmt: skip
    if forward:
        _add_parts(mu, var, need_var, parts[: n_tiles - 1])


@nb.njit(nogil=True, parallel=True, cache=True)
def layer_pass_parallel(  # pragma: no cover - compiled
    H, M, binary, rho, block_rows, update, U, D, upd_rows, n_upd,
    forward, F, W, need_var, fwd_rows, n_fwd, mu, var, S, parts, blas,
):  # fmt: skip
    """:func:`layer_tile` over the row tiles, one thread per tile (numba's ``prange``).

    Row tiles rather than column tiles: each thread then updates full-width blocks, as one
    thread does, and the whole pass scaled better on two cores (docs/performance.md,
    decision 8); the price is one (B, n_out) sum per extra tile.
    """
    n_tiles = S.shape[0]
    for t in nb.prange(n_tiles):
        _tile(
            t, n_tiles, H, M, binary, rho, block_rows, update, U, D, upd_rows, n_upd,
            forward, F, W, need_var, fwd_rows, n_fwd, mu, var, S, parts, blas,
        )  # fmt: skip
    if forward:
        _add_parts(mu, var, need_var, parts[: n_tiles - 1])


leave_kernel_cache()
