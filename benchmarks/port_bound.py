"""How near the issue-13 floor binary weights can come: a count of vector operations.

Run as a script (never part of the test suite)::

    python benchmarks/port_bound.py                 # 784-200-10 and 784-800-800-10, batch 10

The floor of ``bench_train.fused_floor`` counts the products' multiply-adds only, at the rate of
a large square ``numpy.matmul``. Binary weights must also form M = tanh H after every update, one
tanh per weight per minibatch, and the forward σ²-sum needs M² (at least one multiply per weight).
On this kind of core every 512-bit arithmetic operation (multiply-add, min, max, logic, compare,
divide) issues on the same two vector ports, so tanh's operations and the products' share one
budget. This script

1. compiles the kernels' clip-and-tanh loop (``_fused.clip_block``, float32, binary) again and
   counts the vector arithmetic instructions per vector of weights in its innermost loop, from
   numba's assembly (plain loads, stores, register moves and broadcasts not counted; a divide
   counted once, though it is several micro-operations: the count is a lower bound);
2. measures, interleaved, the rate of a loop of independent register multiply-adds (the ports'
   peak) and of the 1024² matmul that sets the floor's rate;
3. prints, for each network, the least time a minibatch can take at the ports' peak, as a
   multiple of the floor: (multiply-adds + the other operations) / multiply-adds × matmul / peak.

It imports the private kernels on purpose: it is a tool that inspects them.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numba as nb  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import SIZES, fused_floor  # noqa: E402

from ebprop.kernels import _fused  # noqa: E402
from ebprop.kernels._simd import VECTOR_BYTES, vfma, vload, vsum, vzero  # noqa: E402

_LABEL = re.compile(r"^(\.LBB\d+_\d+):")
_NOT_ARITHMETIC = re.compile(r"^(vmov\w*|vbroadcast\w*)$")  # loads, stores, register moves


def loop_bodies(asm: str) -> list[list[str]]:
    """The instructions from each label to the first jump back to it (the loops of ``asm``)."""
    lines = asm.splitlines()
    bodies = []
    for start, line in enumerate(lines):
        match = _LABEL.match(line)
        if not match:
            continue
        back = re.compile(rf"^\s+j\w+\s+{re.escape(match.group(1))}\s*$")
        for end in range(start + 1, len(lines)):
            if back.match(lines[end]):
                bodies.append([s.strip() for s in lines[start + 1 : end + 1]])
                break
    return bodies


def vector_ops(body: list[str]) -> tuple[int, int]:
    """(vector arithmetic instructions, divides) in a loop body. A masked move is a blend and
    counts; an unmasked move, load, store or broadcast does not."""
    ops = divides = 0
    for line in body:
        if not line or line.startswith((".", "#")):
            continue
        mnemonic = line.split()[0]
        if not mnemonic.startswith(("v", "k")):
            continue
        if _NOT_ARITHMETIC.match(mnemonic) and "{%k" not in line:
            continue
        ops += 1
        divides += mnemonic.startswith("vdiv")
    return ops, divides


def clip_tanh_asm() -> str:
    """numba's assembly of the kernels' clip-and-tanh loop (``_fused.clip_block``, float32,
    binary), compiled for the CPU numba targets."""
    # numba gives the assembly only of code it compiled in this process, not of code loaded from
    # its cache: compile the kernel's own function again, with the kernel's options.
    kernel = _fused.clip_block
    options = {k: v for k, v in kernel.targetoptions.items() if k != "nopython"}  # njit's own
    fresh = nb.njit(**options)(kernel.py_func)
    H = np.random.default_rng(0).uniform(-12, 12, (8, 800)).astype(np.float32)
    fresh(H, np.empty_like(H), 0, 8, 0, 800, True)
    return "\n".join(fresh.inspect_asm().values())


def tanh_ops_per_vector(asm: str | None = None) -> float:
    """Vector instructions per vector of weights in the tightest clip-and-tanh loop (one divide
    per vector of weights) of ``asm`` (default: :func:`clip_tanh_asm`)."""
    counts = [vector_ops(b) for b in loop_bodies(asm if asm is not None else clip_tanh_asm())]
    ratios = [ops / div for ops, div in counts if div]
    if not ratios:
        raise SystemExit("port_bound: no divide found in clip_block's loops; the count is void")
    return min(ratios)


def binary_vector_ops(
    sizes: tuple[int, ...], batch: int, lanes: int, tanh_ops: float
) -> tuple[float, float]:
    """(multiply-add vectors, other vector operations) one minibatch of binary weights needs: the
    floor's products (``bench_train.fused_floor``'s flops / 2 / lanes) and, per vector of
    weights, ``tanh_ops`` for the clip and tanh plus one multiply for M²."""
    flops, _ = fused_floor(sizes, batch, np.float32, True, 1.0, np.inf)  # 1 flop/s: the flops
    weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    return flops / 2 / lanes, weights / lanes * (tanh_ops + 1)


@nb.njit(fastmath={"contract"})
def _fma_loop(a, n):  # pragma: no cover - compiled
    # 12 independent accumulators: more than the ports' 2 × 4-cycle latency needs
    z, x, y = vzero(a), vload(a, 0), vload(a, 16)
    c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = c8 = c9 = c10 = c11 = z
    for _ in range(n):
        c0, c1, c2, c3 = vfma(x, y, c0), vfma(x, y, c1), vfma(x, y, c2), vfma(x, y, c3)
        c4, c5, c6, c7 = vfma(x, y, c4), vfma(x, y, c5), vfma(x, y, c6), vfma(x, y, c7)
        c8, c9, c10, c11 = vfma(x, y, c8), vfma(x, y, c9), vfma(x, y, c10), vfma(x, y, c11)
    return (vsum(c0) + vsum(c1) + vsum(c2) + vsum(c3) + vsum(c4) + vsum(c5) + vsum(c6)
            + vsum(c7) + vsum(c8) + vsum(c9) + vsum(c10) + vsum(c11))  # fmt: skip


def peak_and_matmul(repeats: int) -> tuple[float, float]:
    """Best flop/s of the register multiply-add loop and of a 1024² float32 matmul, interleaved."""
    lanes = VECTOR_BYTES // 4
    a = np.full(64, 1e-8, np.float32)
    A = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    out = np.empty_like(A)
    _fma_loop(a, 10)
    n = 5_000_000  # ~15 ms, about one matmul: both see the same moments of a noisy host
    peak = matmul = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        _fma_loop(a, n)
        peak = max(peak, n * 12 * lanes * 2 / (time.perf_counter() - t))
        t = time.perf_counter()
        np.matmul(A, A, out=out)
        matmul = max(matmul, 2 * 1024**3 / (time.perf_counter() - t))
    return peak, matmul


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", nargs="+", default=["784-200-10", "784-800-800-10"])
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    lanes = VECTOR_BYTES // 4
    tanh_ops = tanh_ops_per_vector()
    peak, matmul = peak_and_matmul(args.repeats)
    print(f"# float32, {lanes} lanes per vector, batch {args.batch}")
    print(f"# clip + tanh: {tanh_ops:.0f} vector instructions per vector of weights (divide once)")
    print("# M²: 1 multiply per vector of weights (the least the σ²-sum needs)")
    print(
        f"# register multiply-add loop {peak / 1e9:.1f} GFLOP/s; 1024² matmul (the floor's "
        f"rate) {matmul / 1e9:.1f} GFLOP/s = {matmul / peak:.3f} of it (best of {args.repeats})"
    )
    print(
        "| net | multiply-adds (vectors) | other ops (vectors) | least time / floor at the "
        "peak | at the matmul's share of the peak | share of the peak needed for 1.5× |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.nets:
        fmas, other = binary_vector_ops(SIZES[name], args.batch, lanes, tanh_ops)
        ops = (fmas + other) / fmas
        print(f"| {name} | {fmas / 1e6:.3f} M | {other / 1e6:.3f} M | {ops * matmul / peak:.2f} | "
              f"{ops:.2f} | {ops * matmul / peak / 1.5:.0%} |")  # fmt: skip


if __name__ == "__main__":
    main()
