"""Where the fused training loop spends its time, per phase, with 1 and 2 threads (issue 13).

Run as a script (never part of the test suite)::

    python benchmarks/profile_fused.py                 # 784-800-800-10 binary, float32, B = 10

It trains as ``run_minibatches_fused`` does, minibatch after minibatch in one compiled call
(the steps of ``ebprop.kernels._loop.span``), and reads the CPU's cycle counter
(``llvm.readcyclecounter``) between the phases of each minibatch: the backward pass, loading
the next minibatch, each layer's fused update + forward pass. Each phase's share of the counted
cycles, times the call's wall-clock time, gives its time per minibatch, with no Python or
argument dispatch between phases (an earlier version called each phase from Python and counted
numba's dispatch, ~10–20 µs a call, into every phase). Then it times one layer's pass alone,
called 20 times in a row on the same arrays (its parameters stay in cache), to separate the
kernels' own scaling from the memory traffic of the whole loop. For each number of threads it
reports the best of ``--repeats`` passes over ``--samples`` random samples. The numba kernels
are compiled (or loaded from numba's cache) before anything is timed.

This is a profiling tool: it reaches into ``ebprop.kernels.fused``'s internal ``_Engine`` and
``ebprop.kernels._loop`` on purpose, to time the phases that the public function runs back to
back.
"""

from __future__ import annotations

import argparse
import os
import time

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic
from threadpoolctl import threadpool_limits

from ebprop.core import init_network, make_family
from ebprop.kernels import _loop
from ebprop.kernels import fused as fused_engine
from ebprop.trainer import encode_targets


def primed_engine(net, X, batch: int, n_jobs: int, n_slots: int):
    """An engine with its first ``n_slots`` slots loaded with X's first minibatches and run
    forward (what ``run_minibatches_fused`` does on entry)."""
    nb.set_num_threads(n_jobs)
    eng = fused_engine._Engine(net, batch, 0.0, n_jobs)
    fused_engine.refresh_moments(net)
    for slot in range(n_slots):
        eng.prime(X, np.arange(n_slots * batch), slot * batch, slot)
    return eng


@intrinsic
def _cycles(typingctx):  # pragma: no cover - compiled
    # the CPU's cycle counter (rdtsc on x86), for the shares of the phases
    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.readcyclecounter")
        return builder.call(fn, [])

    return nb.types.int64(), codegen


@nb.njit(nogil=True)
def _timed_span(X, Y, batch, net, slots, bufs, plan, counts):  # pragma: no cover - compiled
    # _loop.span over every minibatch of X in order (slot 0 primed), the cycles of each phase
    # added to counts: [backward, load, layer 1, layer 2, …]
    n, L = X.shape[0], len(net[0])
    c, nx, position = 0, 1, 0
    idx = np.arange(0, batch)
    while True:
        t0 = _cycles()
        _loop.backward(Y, idx, c, net, slots, bufs, plan)
        t1 = _cycles()
        position += idx.shape[0]
        has_next = position < n
        if has_next:
            idx = np.arange(position, min(position + batch, n))
            _loop.load(X, idx, nx, slots)
        t2 = _cycles()
        counts[0] += t1 - t0
        counts[1] += t2 - t1
        for i in range(L):
            t3 = _cycles()
            _loop.layer(i, 1.0, c, nx if has_next else -1, net, slots, bufs, plan)
            counts[2 + i] += _cycles() - t3
        if not has_next:
            return
        c, nx = nx, c


def phases(net, X, Y, batch: int, n_jobs: int) -> dict[str, float]:
    """Seconds per minibatch of each phase, one pass over X in one compiled call."""
    eng = primed_engine(net, X, batch, n_jobs, 1)
    n_layers = len(net.H)
    counts = np.zeros(2 + n_layers, np.int64)
    start = time.perf_counter()
    _timed_span(X, Y, batch, eng.net_args, eng.slots, eng.bufs, eng.plan, counts)
    elapsed = time.perf_counter() - start
    n_batches = -(-X.shape[0] // batch)
    names = ["backward", "load"] + [f"layer {i + 1}" for i in range(n_layers)]
    share = counts / max(counts.sum(), 1)
    times = {k: float(f) * elapsed / n_batches for k, f in zip(names, share, strict=True)}
    times["whole minibatch"] = elapsed / n_batches
    return times


def isolated_layer(net, X, batch: int, n_jobs: int, calls: int = 20) -> float:
    """Seconds per call of layer 2's update + forward pass alone, on the same arrays."""
    eng = primed_engine(net, X, batch, n_jobs, 2)
    cur, nxt = 0, 1
    rng = np.random.default_rng(1)
    delta = eng.bufs[0][1]
    delta[...] = rng.normal(scale=1e-3, size=delta.shape)
    t0 = time.perf_counter()
    for _ in range(calls):
        eng.layer(1, 1.0, cur, nxt)
    return (time.perf_counter() - t0) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--net", default="784-800-800-10")
    parser.add_argument("--weights", default="binary", choices=["binary", "real"])
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--samples", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    sizes = [int(s) for s in args.net.split("-")]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.samples, sizes[0])).astype(np.float32)
    Y = encode_targets(rng.integers(0, sizes[-1], args.samples), sizes[-1], np.float32)
    print(f"# {args.net} {args.weights} float32, batch {args.batch}, load {os.getloadavg()}")
    with threadpool_limits(limits=1, user_api="blas"):
        results = {}
        for _ in range(args.repeats):  # interleaved, best of repeats
            for j in args.jobs:
                net = init_network(sizes, make_family(args.weights), rng=np.random.default_rng(0))
                ph = phases(net, X, Y, args.batch, j)
                ph["layer 2 alone (in cache)"] = isolated_layer(net, X, args.batch, j)
                best = results.setdefault(j, ph)
                for k, v in ph.items():
                    best[k] = min(best[k], v)
    print(f"# numba threading layer: {nb.threading_layer()}; load at end {os.getloadavg()}")
    keys = list(results[args.jobs[0]])
    print("| phase | " + " | ".join(f"{j} thread(s), ms" for j in args.jobs) + " | ratio |")
    print("|---|" + "---:|" * (len(args.jobs) + 1))
    for k in keys:
        ms = [results[j][k] * 1e3 for j in args.jobs]
        ratio = ms[0] / ms[-1] if ms[-1] else float("nan")
        print(f"| {k} | " + " | ".join(f"{m:.3f}" for m in ms) + f" | {ratio:.2f}× |")


if __name__ == "__main__":
    main()
