"""Each kernel of one fused layer pass, alone, in cache (issue 13): where a layer's time goes.

Run as a script (never part of the test suite)::

    python benchmarks/layer_parts.py --shape 800 800 --weights binary
    python benchmarks/layer_parts.py --shape 784 200 --weights real

One layer of ``--shape`` (n_in, n_out), float32, B = 10, in the engine's row blocks of
``engine.BLOCK_BYTES`` of H, one thread, the arrays on cache lines as ``init_network``'s. Each
part runs over the whole layer, block by block, from compiled code (no per-call dispatch), 20
times in a row, best of ``--repeats``:

* the update's product ρH + ⟨v⟩ᵀ½Δ (OpenBLAS gemm on the block, beta = 1);
* the clip of H (real weights) or clip and M = tanh H (binary);
* real weights: the update and clip in register tiles instead (``_update.update_clip``, what the
  pass uses for real weights since session 12; with ``--weights binary`` it is timed too, for
  comparison, though binary weights keep BLAS and the clip-and-tanh pass);
* the forward μ-sum F·M and σ²-sum W·M² (``_micro.accumulate``);
* the whole pass (``_fused.layer_tile``: the same calls, in the loop's order).

The parameters stay in cache between calls, so this separates the kernels' own speed from the
memory traffic of a training loop (``profile_fused.py`` times the phases of real minibatches).
A profiling tool: it calls the kernels' internal functions on purpose.
"""

from __future__ import annotations

import argparse
import time

import numba as nb
import numpy as np
from threadpoolctl import threadpool_limits

from ebprop.core.network import aligned_empty
from ebprop.kernels import _fused as K
from ebprop.kernels import fused as engine
from ebprop.kernels._blas import GEMM_ADDRESSES, gemm
from ebprop.kernels._micro import accumulate
from ebprop.kernels._update import update_clip

PARTS = (
    "update gemm", "clip (+ tanh)", "forward μ-sum", "forward σ²-sum", "whole pass",
    "update + clip in tiles",
)  # fmt: skip


@nb.njit
def _run(part, reps, H, M, U, D, F, W, mu, var, rows, S, blas, block, binary):  # pragma: no cover
    n_in, n_out = H.shape
    for _ in range(reps):
        if part == 4:
            K.layer_tile(
                H, M, binary, 1.0, block, True, U, D, rows, -1,
                True, F, W, True, rows, -1, mu, var, S, 0, n_in, blas,
            )  # fmt: skip
            continue
        for r0 in range(0, n_in, block):
            r1 = min(r0 + block, n_in)
            if part == 0:
                gemm(U[:, r0:r1], D, H[r0:r1], 1.0, True, False, blas)
            elif part == 1:
                K.clip_block(H, M, r0, r1, 0, n_out, binary)
            elif part == 2:
                accumulate(F, M, rows, False, r0, r1, 0, n_out, False, mu)
            elif part == 5:
                update_clip(U, D, H, rows, False, r0, r1, 1.0)
            else:
                accumulate(W, M, rows, False, r0, r1, 0, n_out, True, var)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=2, default=[800, 800], metavar=("N_IN", "N_OUT"))
    parser.add_argument("--weights", default="binary", choices=["binary", "real"])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if GEMM_ADDRESSES is None:
        raise SystemExit("NumPy's OpenBLAS was not found: the fused kernels are not available")
    n_in, n_out = args.shape
    binary, B = args.weights == "binary", 10
    block = max(8, min(n_in, engine.BLOCK_BYTES // (n_out * 4)))
    rng = np.random.default_rng(0)
    H = aligned_empty((n_in, n_out), np.float32)  # on a cache line, as init_network's
    H[...] = rng.normal(size=(n_in, n_out))
    M = H  # real weights: M is H
    if binary:
        M = aligned_empty((n_in, n_out), np.float32)
        M[...] = np.tanh(H)
    U = (rng.normal(size=(B, n_in)) * 1e-3).astype(np.float32)
    D = (rng.normal(size=(B, n_out)) * 1e-3).astype(np.float32)
    F = rng.normal(size=(B, n_in)).astype(np.float32)
    W = F * F
    mu, var = np.zeros((B, n_out), np.float32), np.zeros((B, n_out), np.float32)
    rows, S = np.zeros(1, np.int64), np.zeros((block, n_out), np.float32)
    arrays = (H, M, U, D, F, W, mu, var, rows, S, GEMM_ADDRESSES, block, binary)
    flops = 2.0 * B * n_in * n_out  # one product
    best = [np.inf] * len(PARTS)
    with threadpool_limits(limits=1, user_api="blas"):
        for part in range(len(PARTS)):
            _run(part, 1, *arrays)  # compile or load from numba's cache
        for _ in range(args.repeats):  # interleaved, best of repeats
            for part in range(len(PARTS)):
                t0 = time.perf_counter()
                _run(part, 20, *arrays)
                best[part] = min(best[part], (time.perf_counter() - t0) / 20)
    print(f"# {n_in} × {n_out} {args.weights}, float32, B = {B}, blocks of {block} rows, 1 thread")
    print("| part | µs per layer | GFLOP/s or ns per weight |")
    print("|---|---:|---:|")
    for part, name in enumerate(PARTS):
        t = best[part]
        rate = (
            f"{flops / t / 1e9:.1f} GFLOP/s"
            if part in (0, 2, 3, 5)
            else f"{t / (n_in * n_out) * 1e9:.3f} ns/weight"
        )
        print(f"| {name} | {t * 1e6:.1f} | {rate} |")
    print(f"| sum of the four parts | {sum(best[:4]) * 1e6:.1f} | |")


if __name__ == "__main__":
    main()
