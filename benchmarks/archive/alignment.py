"""Training speed with H, M and M² on cache lines against 16 bytes past them (issue 13).

Run as a script (never part of the test suite)::

    python benchmarks/alignment.py --nets 784-200-10 784-800-800-10 --jobs 1
    python benchmarks/alignment.py --nets 784-800-800-10 --jobs 2

``init_network`` allocates every H, M and M² on a 64-byte boundary (``core.network.ALIGNMENT``);
an array from NumPy's allocator may start 16 bytes past one, where the kernels' 32-byte vector
loads straddle cache lines. For each network and weight family, two copies of one initial
network (same values; one aligned, one with every parameter array 16 bytes past a boundary)
train on the same random rows with the fused loop, interleaved, best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ebprop.core import Network, init_network, make_family
from ebprop.core.network import ALIGNMENT
from ebprop.kernels import run_minibatches_fused
from ebprop.trainer import encode_targets


def placed(a: np.ndarray, offset: int) -> np.ndarray:
    """A copy of ``a`` whose data starts ``offset`` bytes past an ALIGNMENT boundary."""
    buffer = np.empty(a.nbytes + 2 * ALIGNMENT, np.uint8)
    start = (-buffer.ctypes.data % ALIGNMENT + offset) % ALIGNMENT
    out = buffer[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nets", nargs="+", default=["784-200-10", "784-800-800-10"])
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    print("| net | weights | threads | aligned samples/s | 16 B past samples/s | ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for spec in args.nets:
        sizes = tuple(int(x) for x in spec.split("-"))
        n = 600 if max(sizes[1:]) > 300 else 3000  # ~0.1–0.2 s per call
        for weights in ("binary", "real"):
            rng = np.random.default_rng(0)
            start = init_network(sizes, make_family(weights), rng)
            X = rng.normal(size=(n, sizes[0])).astype(np.float32)
            Y = encode_targets(rng.integers(0, sizes[-1], n), sizes[-1], np.float32)
            nets = {}
            for offset in (0, 16):
                H = [placed(h, offset) for h in start.H]
                M = H if weights == "real" else [placed(m, offset) for m in start.M]
                M2 = [placed(m, offset) for m in start.M2]
                b = [x.copy() for x in start.b]
                nets[offset] = Network(family=start.family, H=H, b=b, M=M, M2=M2)
            best = dict.fromkeys(nets, np.inf)
            run_minibatches_fused(nets[0], X[:20], Y[:20], np.arange(20), 10, n_jobs=args.jobs)
            for _ in range(args.repeats):
                for offset, net in nets.items():
                    for h, h0, b in zip(net.H, start.H, net.b, strict=True):
                        h[...] = h0  # every call trains from the same start
                        b[...] = 0
                    t0 = time.perf_counter()
                    run_minibatches_fused(net, X, Y, np.arange(n), 10, n_jobs=args.jobs)
                    best[offset] = min(best[offset], time.perf_counter() - t0)
            print(
                f"| {spec} | {weights} | {args.jobs} | {n / best[0]:,.0f} | {n / best[16]:,.0f} "
                f"| {best[16] / best[0]:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
