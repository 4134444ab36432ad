"""Same-process comparison of the fused loop's row-block sizes (issue 13).

Run as a script (never part of the test suite)::

    python benchmarks/block_size.py --sizes 32 64 128 256 --repeats 25

Each layer pass works on row blocks holding ``ebprop.kernels.fused.BLOCK_BYTES`` of H (256 KiB).
This sets that constant before each call (the engine reads it when it sizes its buffers) and
trains the same initial network on the same random rows of MNIST's shape
(``bench_train.random_data``), one thread, float32, batch 10, all sizes interleaved call by call;
each cell is the best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench_train.py
from bench_train import random_data  # noqa: E402

from ebprop.core import init_network, make_family  # noqa: E402
from ebprop.kernels import fused as engine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=["784-200-10", "784-800-800-10"])
    parser.add_argument("--weights", nargs="+", default=["binary", "real"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[32, 64, 128, 256],
                        help="block sizes in KiB")  # fmt: skip
    parser.add_argument("--samples", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print("| net | weights | " + " | ".join(f"{k} KiB samples/s" for k in args.sizes) + " |")
    print("|---|---|" + "---:|" * len(args.sizes))
    for net_spec in args.nets:
        sizes = tuple(int(s) for s in net_spec.split("-"))
        for weights in args.weights:
            rng = np.random.default_rng(0)
            start = init_network(sizes, make_family(weights), rng, dtype=np.float32)
            X, Y = random_data(args.samples, np.float32, rng)
            order = np.arange(args.samples)
            engine.run_minibatches_fused(copy.deepcopy(start), X[:20], Y[:20], order[:20], 10)
            best = dict.fromkeys(args.sizes, np.inf)
            for _ in range(args.repeats):
                for kib in args.sizes:
                    engine.BLOCK_BYTES = kib * 1024
                    net = copy.deepcopy(start)
                    t0 = time.perf_counter()
                    engine.run_minibatches_fused(net, X, Y, order, 10)
                    best[kib] = min(best[kib], time.perf_counter() - t0)
            cells = [f"{args.samples / best[k]:,.0f}" for k in args.sizes]
            print(f"| {net_spec} | {weights} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
