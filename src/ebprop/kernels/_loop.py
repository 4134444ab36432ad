"""The fused training loop's per-minibatch sequence, compiled (numba): the engine's orchestration.

When this sequence was Python, about fifteen kernel calls per minibatch, each paying numba's
argument dispatch (~0.2 µs per array argument) and the Python between them, cost 36–54 µs per
minibatch (a 32-4-10 network, where the arithmetic is nothing; 19–28 µs in compiled code).
Here the whole sequence runs in compiled code, many minibatches per call: Python is entered
once per span of minibatches (one per ``on_batch`` call, or one per epoch without it).

The buffers travel as four tuples (numba unpacks them at no cost):

``net = (H, M, b)``
    tuples of the L layers' arrays: H, M (n_in, n_out), b (n_out,).
``slots = (x, w0, x2sum, active, rows, meta, Z, SC, V, WN)``
    two minibatch slots (the current one and the next one), per slot s: x, w0 = x² (B, n_0),
    x2sum (B,), active (n_0,) bool, rows (n_0,) int64 (the non-zero inputs first);
    meta (2, 2) int64: [s, 0] non-zero inputs, [s, 1] valid rows. Per slot s and layer l at
    index s·L + l: Z, SC (z and σ√c), V (⟨v⟩), WN (the next layer's variance coefficients)
    (B, n_l). The update reads x and V as they are (BLAS transposes them, ``_blas.gemm``).
``bufs = (delta, mu, var, S, parts, zero_B, y, Uc, Fc, Wc)``
    per layer Δ, μ-sum and σ²-sum (B, n_l), the sparse update's scratch S (tiles, rows, n_l)
    (the layer's number of row tiles is S.shape[0]) and the other tiles' sums parts (tiles − 1,
    2, B, n_l); zeros (B,); targets (B, n_L); the compacted first-layer inputs Uc (B, n_0), Fc,
    Wc (B, n_0).
``plan = (coef, block_rows, back_tiles, sparse_limit, binary, parallel, blas, intercept)``
    coef (L, 3) float64: (const, α, β) of σ²c − 1 per layer; block_rows, back_tiles (L,) int64;
    the sparse threshold; flags; :data:`._blas.GEMM_ADDRESSES`; whether the layers have biases
    (without: no +1 in σ²c, b neither read nor updated, as ``fit_intercept=False`` in the core).

Every step is the same call, in the same order, as the Python engine made, so results are
bit-identical to it.
"""

from __future__ import annotations

import numba as nb

from . import _activations as A
from . import _fused as K
from . import _overshoot
from .system import enter_kernel_cache, leave_kernel_cache

enter_kernel_cache()  # numba fixes each function's cache folder when it is decorated


@nb.njit(nogil=True, cache=True)
def load(X, idx, s, slots):  # pragma: no cover - compiled
    """Gather minibatch ``X[idx]`` into slot ``s`` (:func:`._activations.load_inputs`)."""
    x, w0, x2sum, active, rows, meta = slots[:6]
    meta[s, 0] = A.load_inputs(X, idx, x[s], w0[s], x2sum[s], active[s], rows[s])
    meta[s, 1] = idx.shape[0]


@nb.njit(nogil=True, cache=True)
def layer(layer, rho, c, nx, net, slots, bufs, plan):  # pragma: no cover - compiled
    """Update ``layer`` with slot ``c``'s minibatch (c ≥ 0) and run slot ``nx`` (nx ≥ 0) through
    it: one pass over the layer (:func:`._fused.layer_pass_serial` / ``_parallel``)."""
    H, M, b = net
    x, w0, x2sum, active, rows, meta, Z, SC, V, WN = slots
    delta, mu, var, S, parts, zero_B, y, Uc, Fc, Wc = bufs
    coef, block_rows, back_tiles, sparse_limit, binary, parallel, blas, intercept = plan
    L = len(H)
    const, alpha, beta = coef[layer, 0], coef[layer, 1], coef[layer, 2]
    need_var = beta != 0.0
    update, forward = c >= 0, nx >= 0
    rows_u = rows[0]
    rows_f = rows[0]
    n_upd = n_fwd = -1
    U, F, W = Uc, Fc, Wc
    if layer == 0:
        if update:
            U = x[c]
            if rho == 1.0 and meta[c, 0] < sparse_limit:
                n_upd, rows_u = meta[c, 0], rows[c]
                A.compact_columns(x[c], rows_u, n_upd, Uc)
                U = Uc
        if forward:
            F, W = x[nx], w0[nx]
            if meta[nx, 0] < sparse_limit:
                n_fwd, rows_f = meta[nx, 0], rows[nx]
                A.compact_columns(x[nx], rows_f, n_fwd, Fc)
                if need_var:
                    A.compact_columns(w0[nx], rows_f, n_fwd, Wc)
                F, W = Fc, Wc
    else:
        if update:
            U = V[c * L + layer - 1]
        if forward:
            F, W = V[nx * L + layer - 1], WN[nx * L + layer - 1]
    args = (
        H[layer], M[layer], binary, rho, block_rows[layer],
        update, U, delta[layer], rows_u, n_upd,
        forward, F, W, need_var, rows_f, n_fwd, mu[layer], var[layer],
        S[layer], parts[layer], blas,
    )  # fmt: skip
    if parallel and S[layer].shape[0] > 1:  # one tile: no parallel region (its start costs)
        K.layer_pass_parallel(*args)
    else:
        K.layer_pass_serial(*args)
    if forward:
        i = nx * L + layer
        A.finalize(
            mu[layer], var[layer], b[layer], alpha, beta, const,
            x2sum[nx] if layer == 0 else zero_B, Z[i], SC[i], V[i], intercept,
        )  # fmt: skip
        if layer < L - 1:
            A.hidden_inputs(V[i], WN[i], not binary)


@nb.njit(nogil=True, cache=True)
def backward(Y, idx, c, net, slots, bufs, plan):  # pragma: no cover - compiled
    """Δ of every layer for slot ``c`` (halved, padding rows zero) and the biases (if any);
    returns the minibatch's online errors (EBP-P before the update)."""
    H, M, b = net
    meta, Z, SC, V = slots[5], slots[6], slots[7], slots[8]
    delta, y = bufs[0], bufs[6]
    back_tiles, binary, parallel, intercept = plan[2], plan[4], plan[5], plan[7]
    L = len(H)
    last = L - 1
    n_valid = meta[c, 1]
    A.load_targets(Y, idx, y)
    errors = A.count_errors(V[c * L + last], y, n_valid)
    A.output_delta(y, Z[c * L + last], SC[c * L + last], n_valid, delta[last])
    # the overshoot control (core.overshoot): γ < 1 only where the summed update could overshoot
    U = slots[0][c] if last == 0 else V[c * L + last - 1]
    g = _overshoot.gain(
        y, Z[c * L + last], SC[c * L + last], U, M[last], n_valid, binary, last > 0, intercept
    )
    if g < 1.0:
        _overshoot.scale_rows(delta[last], n_valid, g)
    for layer in range(last - 1, -1, -1):
        i = c * L + layer
        args = (delta[layer + 1], M[layer + 1], Z[i], SC[i], delta[layer], back_tiles[layer])
        if parallel and back_tiles[layer] > 1:
            A.hidden_delta_parallel(*args)
        else:
            A.hidden_delta_serial(*args)
    for layer in range(L):
        A.halve_and_bias(delta[layer], b[layer], intercept)
    return errors


@nb.njit(nogil=True, cache=True)
def prime(X, order, position, batch, c, net, slots, bufs, plan):  # pragma: no cover - compiled
    """Load the minibatch at ``position`` into slot ``c`` and run it forward (no update)."""
    load(X, order[position : position + batch], c, slots)
    for i in range(len(net[0])):
        layer(i, 1.0, -1, c, net, slots, bufs, plan)


@nb.njit(nogil=True, cache=True)
def span(X, Y, order, position, batch, rho, c, net, slots, bufs, plan):  # pragma: no cover
    """Train on up to ``rho.shape[0]`` minibatches from ``position`` (< len(order)), whose
    slot ``c`` is loaded and forwarded; ``rho[k, l]`` is ρ_l of the k-th (1.0: plain EBP).

    Returns (position, errors, c): where it stopped, the online errors of its minibatches, and
    the slot that holds the minibatch at ``position`` (loaded and forwarded) if any is left.
    """
    n = order.shape[0]
    L = len(net[0])
    nx = 1 - c
    errors = 0
    idx = order[position : position + batch]
    for k in range(rho.shape[0]):
        errors += backward(Y, idx, c, net, slots, bufs, plan)
        position += idx.shape[0]
        has_next = position < n
        if has_next:
            idx = order[position : position + batch]
            load(X, idx, nx, slots)
        for i in range(L):
            layer(i, rho[k, i], c, nx if has_next else -1, net, slots, bufs, plan)
        if not has_next:
            break
        c, nx = nx, c
    return position, errors, c


leave_kernel_cache()
