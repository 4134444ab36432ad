"""Compiled (Numba) kernels of the packed runtime; same arithmetic as :mod:`ebprop.packed.pack`.

Why compiled: NumPy's ``bitwise_count`` route must materialise (batch, n_out, words) temporaries
and its integer first layer cannot use BLAS, so it loses to float32 BLAS (numbers in
docs/deploy.md). These loops keep one image's activations in L1 and emit the CPU's ``popcnt``.

Importing this module imports numba; :mod:`ebprop.packed.runtime` does so lazily and falls back
to the NumPy kernels when numba is missing.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba.extending import intrinsic

#: Below this batch size the serial kernels run (thread start-up costs more than it saves).
PARALLEL_MIN_BATCH = 64


@intrinsic
def _popcount(typingctx, x):  # pragma: no cover - compiled
    """LLVM's ctpop on a uint64: one ``popcnt`` instruction on x86-64."""
    sig = nb.types.uint64(nb.types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@nb.njit(cache=True, inline="always")
def _pixel_row(p, w_t, thresholds, out_row, acc):  # pragma: no cover - compiled
    # s_k = Σ_j w_jk p_j, summing only the non-zero pixels (MNIST: ~19 %); integer arithmetic.
    acc[:] = 0
    n_in, n_out = w_t.shape
    for j in range(n_in):
        pj = np.int32(p[j])
        if pj != 0:
            for k in range(n_out):
                acc[k] += w_t[j, k] * pj
    out_row[:] = 0
    for k in range(n_out):
        if acc[k] >= thresholds[k]:
            out_row[k >> 6] |= np.uint64(1) << np.uint64(k & 63)


@nb.njit(cache=True, inline="always")
def _mismatches(a, w, k):  # pragma: no cover - compiled
    c = 0
    for q in range(a.shape[0]):
        c += _popcount(a[q] ^ w[k, q])
    return c


@nb.njit(cache=True, inline="always")
def _binary_row(a, w, n, thresholds, out_row):  # pragma: no cover - compiled
    out_row[:] = 0
    for k in range(w.shape[0]):
        if n - 2 * np.int64(_mismatches(a, w, k)) >= thresholds[k]:
            out_row[k >> 6] |= np.uint64(1) << np.uint64(k & 63)


@nb.njit(cache=True, inline="always")
def _dot_row(a, w, n, out_row):  # pragma: no cover - compiled
    for k in range(w.shape[0]):
        out_row[k] = n - 2 * np.int64(_mismatches(a, w, k))


@nb.njit(cache=True)
def pixel_layer_serial(pixels, w_t, thresholds, out, start, stop):  # pragma: no cover
    """Rows start..stop: bits of [s ≥ T] for uint8 pixels (B, n_in), ±1 int8 w_t (n_in, n_out)."""
    acc = np.empty(w_t.shape[1], dtype=np.int32)
    for i in range(start, stop):
        _pixel_row(pixels[i], w_t, thresholds, out[i], acc)


@nb.njit(cache=True)
def binary_layer_serial(a, w, n, thresholds, out, start, stop):  # pragma: no cover
    """Rows start..stop: bits of [n − 2·popcount(a XOR w) ≥ T], a (B, words), w (n_out, words)."""
    for i in range(start, stop):
        _binary_row(a[i], w, n, thresholds, out[i])


@nb.njit(cache=True)
def binary_dot_serial(a, w, n, out, start, stop):  # pragma: no cover
    """Rows start..stop: integer dots n − 2·popcount(a XOR w) into out (B, n_out)."""
    for i in range(start, stop):
        _dot_row(a[i], w, n, out[i])


@nb.njit(cache=True)
def pixel_dot_serial(pixels, w_t, out, start, stop):  # pragma: no cover
    """Rows start..stop: integer s = Σ_j w_jk p_j into out (B, n_out) int32 (for inspection)."""
    for i in range(start, stop):
        out[i, :] = 0
        for j in range(pixels.shape[1]):
            pj = np.int32(pixels[i, j])
            if pj != 0:
                for k in range(w_t.shape[1]):
                    out[i, k] += w_t[j, k] * pj


@nb.njit(cache=True)
def forward_serial(pixels, w_t, t0, ws, ns, ts, bufs, out, start, stop):  # pragma: no cover
    """Integer output dots of images start..stop (at least one hidden layer).

    pixels (B, n_0) uint8; w_t (n_0, n_1) int8 ±1; t0 (n_1,) int32; ws: tuple of packed rows
    (n_{l+1}, words_l) uint64 for l ≥ 1; ns: (L−1,) int64 widths n_l; ts: tuple of int32
    thresholds (hidden layers only); bufs: tuple of (B, words_l) uint64 scratch; out (B, n_L).
    """
    pixel_layer_serial(pixels, w_t, t0, bufs[0], start, stop)
    last = len(ws) - 1
    for layer in range(last):
        binary_layer_serial(
            bufs[layer], ws[layer], ns[layer], ts[layer], bufs[layer + 1], start, stop
        )
    binary_dot_serial(bufs[last], ws[last], ns[last], out, start, stop)


@nb.njit(cache=True, parallel=True)
def forward_parallel(pixels, w_t, t0, ws, ns, ts, bufs, out, n_chunks):  # pragma: no cover
    """:func:`forward_serial` over the whole batch, ``n_chunks`` contiguous ranges in threads."""
    b = pixels.shape[0]
    size = (b + n_chunks - 1) // n_chunks
    for c in nb.prange(n_chunks):
        forward_serial(pixels, w_t, t0, ws, ns, ts, bufs, out, c * size, min(b, (c + 1) * size))
