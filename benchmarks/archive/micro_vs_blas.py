"""The register-blocked kernels of ``ebprop.kernels._micro`` against OpenBLAS, one layer (issue 13).

Run as a script (never part of the test suite)::

    python benchmarks/micro_vs_blas.py                  # 800 × 800, B = 10, float32 and float64

Times, in one process and interleaved, the two products of one layer pass that the kernels
replace: the forward sums μ += F M and σ² += W M² over the row blocks of ~256 KiB that the fused
loop uses (OpenBLAS: two gemm calls per block, with M² squared into a scratch block first, as
the loop did before session 7), and the backward product Δ Mᵀ (OpenBLAS: one transposed gemm).
Each cell is the best of ``--repeats`` batches of 20 calls made from compiled code (no Python
between calls). It imports the private kernels on purpose: it is a tool that checks them.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numba as nb  # noqa: E402
import numpy as np  # noqa: E402

from ebprop.kernels._blas import GEMM_ADDRESSES, gemm  # noqa: E402
from ebprop.kernels._micro import accumulate, dot_rows  # noqa: E402

BLOCK_BYTES = 256 * 1024


@nb.njit
def forward_micro(F, W, M, rows, mu, var, block, reps):
    n, m = M.shape
    for _ in range(reps):
        for r0 in range(0, n, block):
            r1 = min(r0 + block, n)
            accumulate(F, M, rows, False, r0, r1, 0, m, False, mu)
            accumulate(W, M, rows, False, r0, r1, 0, m, True, var)


@nb.njit
def forward_blas(F, W, M, G2, mu, var, block, reps, blas):
    n, m = M.shape
    for _ in range(reps):
        for r0 in range(0, n, block):
            r1 = min(r0 + block, n)
            gemm(F[:, r0:r1], M[r0:r1], mu, 1.0, False, False, blas)
            for j in range(r0, r1):
                for k in range(m):
                    G2[j - r0, k] = M[j, k] * M[j, k]
            gemm(W[:, r0:r1], G2[: r1 - r0], var, 1.0, False, False, blas)


@nb.njit
def backward_micro(U, M, out, reps):
    for _ in range(reps):
        dot_rows(U, M, 0, M.shape[0], out)


@nb.njit
def backward_blas(U, M, out, reps, blas):
    for _ in range(reps):
        gemm(U, M, out, 0.0, False, True, blas)


def time_dtype(name: str, n: int, B: int, repeats: int, rng: np.random.Generator) -> dict:
    """Best ms per call of each of the four, for one dtype."""
    dt = np.dtype(name)
    block = max(8, BLOCK_BYTES // (n * dt.itemsize))
    M = rng.standard_normal((n, n)).astype(dt)
    F = rng.standard_normal((B, n)).astype(dt)
    W, U = F * F, rng.standard_normal((B, n)).astype(dt)
    mu, var, out = (np.zeros((B, n), dt) for _ in range(3))
    G2, rows = np.zeros((block, n), dt), np.arange(n)
    runs = {
        "fm": lambda r: forward_micro(F, W, M, rows, mu, var, block, r),
        "fb": lambda r: forward_blas(F, W, M, G2, mu, var, block, r, GEMM_ADDRESSES),
        "bm": lambda r: backward_micro(U, M, out, r),
        "bb": lambda r: backward_blas(U, M, out, r, GEMM_ADDRESSES),
    }
    for run in runs.values():
        run(1)  # compile (or load from numba's cache)
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for key, run in runs.items():
            t = time.perf_counter()
            run(20)
            best[key] = min(best[key], (time.perf_counter() - t) / 20 * 1e3)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=800, help="rows and columns of M")
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if GEMM_ADDRESSES is None:
        raise SystemExit("NumPy's OpenBLAS was not found: nothing to compare against")
    rng = np.random.default_rng(0)
    n, B = args.n, args.batch
    print(f"# M {n} × {n}, B = {B}, one thread, best of {args.repeats} × 20 calls, ms per call")
    print("| dtype | forward: kernel | forward: OpenBLAS + square | backward: kernel | "
          "backward: OpenBLAS |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    for name in args.dtypes:
        b = time_dtype(name, args.n, args.batch, args.repeats, rng)
        print(f"| {name} | {b['fm']:.3f} | {b['fb']:.3f} | {b['bm']:.3f} | {b['bb']:.3f} |")


if __name__ == "__main__":
    main()
