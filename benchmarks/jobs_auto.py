"""``--jobs auto`` against one thread, side by side: seconds per MNIST pass, interleaved.

Run as a script (never part of the test suite)::

    EBPROP_DATA=DIR python benchmarks/jobs_auto.py 500-500 800-800 [--samples 20000] [--repeats 3]
    EBPROP_DATA=DIR python benchmarks/jobs_auto.py 800-800 --busy   # a busy loop on one CPU

Each repeat trains the same network (binary, float32, batch 10) on the first ``--samples`` MNIST
training images with ``n_jobs=1`` and with ``n_jobs="auto"`` (a fresh chooser each time, so its
measuring is paid as a new run pays it), one after the other, and prints both rates and their
ratio; the ratios of one repeat come from the same minutes of a shared machine. ``--busy`` runs a
busy-looping process pinned to the first CPU meanwhile (as a browser tab would). The load average
is printed with each repeat: on a machine shared with other jobs, "idle" is whatever it says.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

import numpy as np

from ebprop import EBPClassifier
from ebprop.datasets import Preprocessor, load_dataset
from ebprop.kernels import ThreadChooser, max_threads, run_minibatches_fused


def _busy() -> None:  # pragma: no cover - a child process
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("hidden", nargs="+", help="hidden sizes, e.g. 500-500")
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--busy", action="store_true", help="a busy loop on the first CPU")
    args = parser.parse_args()
    ds = load_dataset("mnist", os.environ.get("EBPROP_DATA"), download=False)
    n = args.samples
    X = Preprocessor().fit(ds.X_train, ds.max_value).transform(ds.X_train[:n]).astype(np.float32)
    busy = None
    if args.busy:
        busy = multiprocessing.get_context("spawn").Process(target=_busy, daemon=True)
        busy.start()
    print(f"max_threads {max_threads()}, busy loop {'on' if busy else 'off'}, {n} samples")
    try:
        for hidden in args.hidden:
            sizes = tuple(int(h) for h in hidden.split("-"))
            est = EBPClassifier(hidden_layer_sizes=sizes, dtype="float32", random_state=0)
            est.init_parameters(X.shape[1], np.arange(10), np.random.default_rng(0))
            Y = est.coding.targets(ds.y_train[:n], np.float32)
            order = np.arange(n)
            for jobs in (1, 2, "auto"):  # compile (or load the cache) outside the timing
                run_minibatches_fused(est.trainer().net, X[:100], Y[:100], order[:100], 10,
                                      n_jobs=jobs)  # fmt: skip
            ratios = []
            for rep in range(args.repeats):
                seconds = {}
                for jobs in (1, "auto") if rep % 2 == 0 else ("auto", 1):
                    net = est.trainer().net
                    chooser = ThreadChooser(max_threads()) if jobs == "auto" else 1
                    start = time.perf_counter()
                    run_minibatches_fused(net, X, Y, order, 10, n_jobs=chooser,
                                          on_batch=lambda p, e: False, callback_every=16)  # noqa: E501  # fmt: skip
                    seconds[jobs] = time.perf_counter() - start
                    if jobs == "auto":
                        decisions = " ".join(f"{e[0]}:{e[3]}" for e in chooser.log)
                ratios.append(seconds[1] / seconds["auto"])
                print(f"784-{hidden}-10 rep {rep}: one thread {n / seconds[1]:,.0f}/s, auto "
                      f"{n / seconds['auto']:,.0f}/s, auto/one {ratios[-1]:.2f}x "
                      f"[{decisions}] load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
            print(f"784-{hidden}-10: auto/one median {statistics.median(ratios):.2f}x, "
                  f"range {min(ratios):.2f}-{max(ratios):.2f}x", flush=True)  # fmt: skip
    finally:
        if busy is not None:
            busy.terminate()


if __name__ == "__main__":
    main()
