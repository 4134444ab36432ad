"""The fused training loop: a drop-in for :func:`ebprop.train.run_minibatches_inplace`.

Per minibatch t (its forward statistics already computed):

1. backward pass of t (Δ_L, then Δ_l = (Δ_{l+1} M_{l+1}ᵀ)·2φ(z_l)/(σ_l√c_l), pre-update M);
2. ½Δ and the biases b_l += Σ ½Δ_l;
3. one pass over each layer, bottom-up: the update of t, block by block, and in the same pass
   the forward sums of minibatch t + 1 (:mod:`._fused`);
4. ``on_batch(position, errors)`` — H, b and M are current at this point; M² is not stored
   during the call (the forward kernel squares M in registers where the sums need it) and
   is brought up to date when the call returns.

So each layer's H is read and written once per minibatch, M written once and read once more by
the backward pass. The first minibatch of a call gets a forward pass of its own (same code, no
update), so that a run resumed at any minibatch boundary is bit-identical to one that never
stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numba as nb
import numpy as np
from threadpoolctl import threadpool_limits

from ..core import Network, Reinforcement
from . import _fused as K
from ._blas import GEMM_ADDRESSES

__all__ = ["SPARSE_FRACTION", "refresh_moments", "run_minibatches_fused", "supports"]

#: Bytes of H per row block of a tile (as the core's ``Network.block_bytes``).
BLOCK_BYTES = 256 * 1024
#: First-layer inputs that are zero in every sample of a minibatch are skipped (their update is
#: exactly zero and they add nothing to the sums) when fewer than this fraction is non-zero.
SPARSE_FRACTION = 0.75
#: A layer is split over threads only when each thread gets at least this many output units.
MIN_UNITS_PER_THREAD = 64

BatchCallback = Callable[[int, int], "bool | None"]


def supports(net: Network) -> bool:
    """Whether the fused kernels implement ``net`` (binary/real weights, float32/float64) and
    NumPy's OpenBLAS was found for them."""
    return (
        GEMM_ADDRESSES is not None
        and net.family.name in ("binary", "real")
        and net.dtype in (np.float32, np.float64)
        and all(h.flags.c_contiguous and h.dtype == net.dtype for h in net.H)
        and all(m.flags.c_contiguous for m in (*net.M, *net.M2))
    )


def refresh_moments(net: Network) -> None:
    """M = tanh H (the kernels' tanh, within 4 ulp of NumPy's) and M² = M·M for every layer."""
    binary = net.family.name == "binary"
    for H, M, M2 in zip(net.H, net.M, net.M2, strict=True):
        K.moments(H, M, M2, binary)


def _tiles(n: int, n_jobs: int) -> int:
    return max(1, min(n_jobs, n // MIN_UNITS_PER_THREAD)) if n_jobs > 1 else 1


@dataclass
class _Slot:
    """One minibatch's activations (padded to B rows)."""

    x: np.ndarray  # (B, n_0)
    xT: np.ndarray  # (n_0, B)
    w0: np.ndarray  # (B, n_0) x²
    x2sum: np.ndarray  # (B,)
    active: np.ndarray  # (n_0,) bool
    rows: np.ndarray  # (n_0,) int64: the non-zero inputs first
    n_active: int
    n_valid: int
    z: list[np.ndarray]  # per layer (B, n_l)
    scale: list[np.ndarray]
    v: list[np.ndarray]
    vT: list[np.ndarray]  # (n_l, B)
    w: list[np.ndarray]  # next layer's variance coefficients (B, n_l)

    @classmethod
    def empty(cls, sizes: Sequence[int], B: int, dtype: np.dtype) -> _Slot:
        n0 = sizes[0]
        outs = sizes[1:]
        return cls(
            x=np.zeros((B, n0), dtype),
            xT=np.zeros((n0, B), dtype),
            w0=np.zeros((B, n0), dtype),
            x2sum=np.zeros(B, dtype),
            active=np.zeros(n0, np.bool_),
            rows=np.zeros(n0, np.int64),
            n_active=0,
            n_valid=0,
            z=[np.zeros((B, n), dtype) for n in outs],
            scale=[np.ones((B, n), dtype) for n in outs],
            v=[np.zeros((B, n), dtype) for n in outs],
            vT=[np.zeros((n, B), dtype) for n in outs],
            w=[np.zeros((B, n), dtype) for n in outs],
        )


class _Engine:
    """Buffers and the per-minibatch sequence of kernel calls for one network and batch size."""

    def __init__(self, net: Network, B: int, nu: float, n_jobs: int) -> None:
        self.net, self.B, self.n_jobs = net, B, n_jobs
        dt = net.dtype
        sizes = net.sizes
        self.binary = net.family.name == "binary"
        self.real = not self.binary
        pv = float(getattr(net.family, "prior_variance", 1.0))
        alpha, beta = net.family.first_layer_coefficients(nu)
        # (const, alpha, beta) of σ²c − 1 = const + α Σx² + β·(var sum), per layer.
        self.coef = [(0.0, float(alpha), float(beta))]
        for n_in in sizes[1:-1]:
            self.coef.append((pv * n_in, 0.0, 1.0) if self.real else (float(n_in), 0.0, -1.0))
        self.slots = [_Slot.empty(sizes, B, dt), _Slot.empty(sizes, B, dt)]
        self.delta = [np.zeros((B, n), dt) for n in sizes[1:]]
        self.mu = [np.zeros((B, n), dt) for n in sizes[1:]]
        self.var = [np.zeros((B, n), dt) for n in sizes[1:]]
        self.zero_B = np.zeros(B, dt)
        self.y = np.zeros((B, sizes[-1]), dt)
        self.tiles, self.block_rows, self.scratch = [], [], []
        for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            t = _tiles(n_out, n_jobs)
            width = -(-n_out // t)
            rows = max(8, min(n_in, BLOCK_BYTES // (width * dt.itemsize)))
            self.tiles.append(t)
            self.block_rows.append(rows)
            # the sparse update's increment: only the first layer's inputs are ever sparse
            shape = (t, rows, width) if layer == 0 else (t, 0, 0)
            self.scratch.append(np.zeros(shape, dt))
        self.back_tiles = [_tiles(n, n_jobs) for n in sizes[1:]]
        n0 = sizes[0]
        self.CTc = np.zeros((n0, B), dt)
        self.Fc = np.zeros((B, n0), dt)
        self.Wc = np.zeros((B, n0), dt)
        self.layer_pass = K.layer_pass_parallel if n_jobs > 1 else K.layer_pass_serial
        self.hidden_delta = K.hidden_delta_parallel if n_jobs > 1 else K.hidden_delta_serial
        self.sparse_limit = SPARSE_FRACTION * n0

    def load(self, slot: _Slot, X: np.ndarray, idx: np.ndarray) -> None:
        slot.n_active = K.load_inputs(
            X, idx, slot.x, slot.xT, slot.w0, slot.x2sum, slot.active, slot.rows
        )
        slot.n_valid = idx.shape[0]

    def layer(
        self,
        layer: int,
        rho: float,
        cur: _Slot | None,
        nxt: _Slot | None,
    ) -> None:
        """Update ``layer`` with minibatch ``cur`` (if any); run ``nxt`` (if any) through it."""
        net = self.net
        H, M = net.H[layer], net.M[layer]
        S = self.scratch[layer]
        const, alpha, beta = self.coef[layer]
        need_var = beta != 0.0
        update, forward = cur is not None, nxt is not None
        rows_u = rows_f = self.slots[0].rows
        n_upd = n_fwd = -1
        if layer == 0:
            CT = cur.xT if update else self.CTc
            F, W = (nxt.x, nxt.w0) if forward else (self.Fc, self.Wc)
            if update and rho == 1.0 and cur.n_active < self.sparse_limit:
                n_upd, rows_u = cur.n_active, cur.rows
                K.compact_rows(cur.xT, rows_u, n_upd, self.CTc)
                CT = self.CTc
            if forward and nxt.n_active < self.sparse_limit:
                n_fwd, rows_f = nxt.n_active, nxt.rows
                K.compact_columns(nxt.x, rows_f, n_fwd, self.Fc)
                if need_var:
                    K.compact_columns(nxt.w0, rows_f, n_fwd, self.Wc)
                F, W = self.Fc, self.Wc
        else:
            CT = cur.vT[layer - 1] if update else self.CTc
            F, W = (nxt.v[layer - 1], nxt.w[layer - 1]) if forward else (self.Fc, self.Wc)
        self.layer_pass(
            H, M, self.binary, rho, self.block_rows[layer],
            update, CT, self.delta[layer], rows_u, n_upd,
            forward, F, W, need_var, rows_f, n_fwd, self.mu[layer], self.var[layer],
            S, self.tiles[layer], GEMM_ADDRESSES,
        )  # fmt: skip
        if forward:
            x2sum = nxt.x2sum if layer == 0 else self.zero_B
            K.finalize(
                self.mu[layer], self.var[layer], net.b[layer], alpha, beta, const, x2sum,
                nxt.z[layer], nxt.scale[layer], nxt.v[layer],
            )  # fmt: skip
            if layer < len(net.H) - 1:
                K.hidden_inputs(nxt.v[layer], nxt.vT[layer], nxt.w[layer], self.real)

    def backward(self, cur: _Slot, Y: np.ndarray, idx: np.ndarray) -> int:
        """Δ of every layer (halved, rows beyond the minibatch zero), the biases; errors of t."""
        net = self.net
        last = len(net.H) - 1
        K.load_targets(Y, idx, self.y)
        errors = K.count_errors(cur.v[last], self.y, cur.n_valid)
        K.output_delta(self.y, cur.z[last], cur.scale[last], cur.n_valid, self.delta[last])
        for layer in range(last - 1, -1, -1):
            self.hidden_delta(
                self.delta[layer + 1], net.M[layer + 1], cur.z[layer], cur.scale[layer],
                self.delta[layer], self.back_tiles[layer],
            )  # fmt: skip
        for layer in range(last + 1):
            K.halve_and_bias(self.delta[layer], net.b[layer])
        return int(errors)


def run_minibatches_fused(
    net: Network,
    X: np.ndarray,
    Y: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    nu: float = 0.0,
    start: int = 0,
    on_batch: BatchCallback | None = None,
    reinforcement: Reinforcement | None = None,
    epoch: int = 0,
    n_jobs: int = 1,
) -> tuple[int, int]:
    """Train ``net`` on ``X[order[start:]]`` in minibatches, in place, with the fused kernels.

    Same arguments, behaviour and return value as :func:`ebprop.train.run_minibatches_inplace`
    (which is the definition), plus ``n_jobs``: threads that split each layer (1 = serial). BLAS
    is limited to one thread meanwhile (no oversubscription). Results equal the NumPy path to
    float round-off; for a given ``n_jobs`` they are bit-identical run to run, and a run stopped
    by ``on_batch`` and resumed at ``start`` gives the same parameters as one that never stopped.
    """
    if not supports(net):
        raise ValueError("the fused kernels support binary/real weights in float32/float64 only")
    if batch_size < 1 or n_jobs < 1:
        raise ValueError(f"batch_size and n_jobs must be ≥ 1, got {batch_size} and {n_jobs}")
    n = order.shape[0]
    if start >= n:
        return start, 0
    order = np.ascontiguousarray(order, dtype=np.int64)
    X = np.ascontiguousarray(X)
    Y = np.ascontiguousarray(Y, dtype=net.dtype)
    engine = _Engine(net, batch_size, nu, n_jobs)
    n_layers = len(net.H)
    previous_threads = nb.get_num_threads()
    with threadpool_limits(limits=1, user_api="blas"):
        if n_jobs > 1:
            nb.set_num_threads(min(n_jobs, nb.config.NUMBA_NUM_THREADS))
        try:
            refresh_moments(net)  # M = the kernels' tanh H, bit for bit, on every entry
            cur, nxt = engine.slots
            position = start
            idx = order[position : position + batch_size]
            engine.load(cur, X, idx)
            for layer in range(n_layers):
                engine.layer(layer, 1.0, None, cur)
            n_errors = 0
            while True:
                rho: Sequence[float] | None = None
                if reinforcement is not None:
                    rho = reinforcement.factors(n_layers, epoch + position / n)
                if rho is not None and len(rho) != n_layers:
                    raise ValueError(f"rho has {len(rho)} factors for {n_layers} layers")
                n_errors += engine.backward(cur, Y, idx)
                position += idx.shape[0]
                has_next = position < n
                if has_next:
                    idx = order[position : position + batch_size]
                    engine.load(nxt, X, idx)
                for layer in range(n_layers):
                    factor = 1.0 if rho is None else float(rho[layer])
                    engine.layer(layer, factor, cur, nxt if has_next else None)
                if on_batch is not None and on_batch(position, n_errors):
                    break
                if not has_next:
                    break
                cur, nxt = nxt, cur
        finally:
            for M, M2 in zip(net.M, net.M2, strict=True):
                K.square_moments(M, M2)  # M² was squared in registers, not stored
            if n_jobs > 1:
                nb.set_num_threads(previous_threads)
    return position, n_errors
