"""Same-process A/B of the fused training loop against an older checkout's (issue 13).

Run as a script (never part of the test suite)::

    git worktree add ../ebprop-old <commit>
    python benchmarks/ab_fused.py --old-src ../ebprop-old/src

Separate processes on a shared machine cannot be compared (docs/performance.md), so the older
package is copied under another name (``ebprop_old``) and imported beside this one. Both train
the same initial network on the same random rows of MNIST's shape
(``bench_train.random_data``; with ``--mnist``, MNIST's own first images, whose zero pixels take
the sparse first-layer path), interleaved call by call (old and new, each number of threads in
``--jobs``); each cell is the best of ``--repeats``. With several ``--jobs`` a second table gives
each version's speed-up over its first ``--jobs`` entry, measured in the same interleaved calls.
The first calls (numba compilation or cache loads) are made before any timing.
"""

from __future__ import annotations

import argparse
import atexit
import copy
import importlib
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench_train.py
from bench_train import mnist_rows, random_data  # noqa: E402

from ebprop.core import init_network, make_family  # noqa: E402
from ebprop.kernels import run_minibatches_fused  # noqa: E402


def import_renamed(src: Path, name: str = "ebprop_old"):
    """The package ``src/ebprop`` imported as ``name`` (absolute imports rewritten)."""
    root = Path(tempfile.mkdtemp(prefix="ebprop-ab-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    shutil.copytree(src / "ebprop", root / name, ignore=shutil.ignore_patterns("__pycache__"))
    pattern = re.compile(r"\b(from|import) ebprop\b")
    for path in (root / name).rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(pattern.sub(rf"\1 {name}", text), encoding="utf-8")
    sys.path.insert(0, str(root))
    return importlib.import_module(f"{name}.kernels")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old-src", type=Path, required=True, help="an older checkout's src/")
    parser.add_argument("--nets", nargs="+", default=["784-200-10", "784-800-800-10"])
    parser.add_argument("--weights", nargs="+", default=["binary", "real"])
    parser.add_argument("--dtypes", nargs="+", default=["float32"])
    parser.add_argument("--samples", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1], help="threads (n_jobs)")
    parser.add_argument(
        "--mnist",
        type=Path,
        default=None,
        help="MNIST folder: train on its first --samples images (zero pixels: the sparse path)",
    )
    args = parser.parse_args()
    old = import_renamed(args.old_src)
    print("| net | weights | dtype | threads | old samples/s | new samples/s | new/old |")
    print("|---|---|---|---:|---:|---:|---:|")
    scaling = []
    for net_spec in args.nets:
        sizes = tuple(int(s) for s in net_spec.split("-"))
        for weights in args.weights:
            for dtype in (np.dtype(d).type for d in args.dtypes):
                rng = np.random.default_rng(0)
                start = init_network(sizes, make_family(weights), rng, dtype=dtype)
                if args.mnist is not None:
                    X, Y = mnist_rows(args.mnist, dtype, args.samples)
                else:
                    X, Y = random_data(args.samples, dtype, rng)
                order = np.arange(args.samples)
                fns = {"old": old.run_minibatches_fused, "new": run_minibatches_fused}
                runs = [(key, j) for j in args.jobs for key in fns]
                best = dict.fromkeys(runs, np.inf)
                for key, j in runs:  # compile / load from cache
                    fns[key](copy.deepcopy(start), X[:20], Y[:20], order[:20], 10, n_jobs=j)
                for _ in range(args.repeats):
                    for key, j in runs:
                        net = copy.deepcopy(start)
                        t0 = time.perf_counter()
                        fns[key](net, X, Y, order, 10, n_jobs=j)
                        best[key, j] = min(best[key, j], time.perf_counter() - t0)
                rate = {run: args.samples / t for run, t in best.items()}
                for j in args.jobs:
                    o, n = rate["old", j], rate["new", j]
                    cells = [net_spec, weights, np.dtype(dtype).name, str(j), f"{o:,.0f}",
                             f"{n:,.0f}", f"{n / o:.2f}"]  # fmt: skip
                    print("| " + " | ".join(cells) + " |", flush=True)
                j0 = args.jobs[0]
                for j in args.jobs[1:]:
                    up = [rate[key, j] / rate[key, j0] for key in ("old", "new")]
                    scaling.append((net_spec, weights, np.dtype(dtype).name, j, *up))
    if scaling:
        j0 = args.jobs[0]
        print(f"\n| net | weights | dtype | threads | old: vs {j0} | new: vs {j0} |")
        print("|---|---|---|---:|---:|---:|")
        for net_spec, weights, dt, j, o, n in scaling:
            print(f"| {net_spec} | {weights} | {dt} | {j} | {o:.2f} | {n:.2f} |")


if __name__ == "__main__":
    main()
