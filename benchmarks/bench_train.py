"""Training speed of ebprop against the machine's limits and against a straightforward baseline.

Run as a script (never part of the test suite)::

    python benchmarks/bench_train.py --blas-threads 1            # the table of docs/performance.md
    python benchmarks/bench_train.py --mnist-epoch DATA_DIR/mnist     # one real epoch
    python benchmarks/bench_train.py --mnist-epoch DATA_DIR/mnist --jobs 1 --no-intercept
    python benchmarks/bench_train.py --blas-threads 1 --nets 784-200-10 784-800-800-10 \
        --batches 10 --dtypes float32 --jobs 1 2                 # issue 13: the fused kernels

For every configuration (784-200-10, 784-800-800-10, 784-2000-2000-10; binary and real weights;
batch 1, 10, 100; float32 and float64) it trains on random data of MNIST's shape for a fixed
*fraction of an epoch* — about ``--seconds`` of minibatches per measurement, best of ``--repeats``
measurements, the optimised core and the baseline interleaved so that both see the same machine
load — and prints samples/s. In the same run it measures the machine's limits:

* memory bandwidth: a large array copy, (bytes read + bytes written) / time;
* matrix-multiply time: ``numpy.matmul`` of exactly the products one minibatch needs;

and from them a floor per minibatch: max(time to read every layer's parameters three times and
write them once at that bandwidth, time of the minibatch's matrix products). It prints achieved
time / floor and the speed-up over ``ebprop.reference.baseline_step`` (one NumPy line per equation).
All ratios are from one run; absolute numbers move with the machine's load.

With ``--jobs`` (issue 13) it also times the fused compiled loop (``ebprop.kernels``) with each
number of threads, interleaved with the others, against a first-principles floor: the flops a
minibatch must do (every product of the algorithm, tanh not counted) at the machine's measured
FMA throughput (a large square ``numpy.matmul``), and the bytes that must move (H read and written
once per layer, M read once more by the backward pass) at the measured copy bandwidth.
"""

from __future__ import annotations

import argparse
import gzip
import inspect
import os
import platform
import time
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import numpy as np

from ebprop.core import init_network, make_family  # noqa: E402
from ebprop.kernels import run_minibatches_fused  # noqa: E402
from ebprop.reference import baseline_step  # noqa: E402
from ebprop.trainer import encode_targets  # noqa: E402
from ebprop.trainer import run_minibatches_inplace as _train_loop  # noqa: E402

# The NumPy reference loop (trainer.py's own loop; n_jobs=0 where trainer.py can pick the kernels).
run_minibatches_inplace = (
    partial(_train_loop, n_jobs=0)
    if "n_jobs" in inspect.signature(_train_loop).parameters
    else _train_loop
)

SIZES = {
    "784-200-10": (784, 200, 10),
    "784-500-500-10": (784, 500, 500, 10),
    "784-800-800-10": (784, 800, 800, 10),
    "784-2000-2000-10": (784, 2000, 2000, 10),
}
N_TRAIN = 60_000  # MNIST's training-set size: the data is (60000, 784)


def best_time(fn: Callable[[], object], repeats: int, min_seconds: float = 0.05) -> float:
    """Best seconds per call of ``fn`` over ``repeats`` timed loops of ≥ ``min_seconds`` each."""
    fn()
    best = np.inf
    for _ in range(repeats):
        calls, t0 = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / calls)
    return best


def copy_bandwidth(n_bytes: int = 256 * 2**20, repeats: int = 5) -> float:
    """Bytes/s of a large ``np.copyto``, counting the bytes read plus the bytes written."""
    src = np.ones(n_bytes // 8)
    dst = np.empty_like(src)
    return 2 * src.nbytes / best_time(lambda: np.copyto(dst, src), repeats)


def minibatch_matmuls(
    sizes: tuple[int, ...], batch: int, dtype: type, binary: bool
) -> tuple[Callable[[], None], float]:
    """A function running the matrix products of one minibatch, and their flop count.

    Forward: v @ M per layer, plus x² @ M² (binary layer 1) and v² @ M² (hidden layers);
    backward: Δ @ Mᵀ for layers ≥ 2; update: vᵀ Δ per layer.
    """
    rng = np.random.default_rng(0)
    products: list[tuple[np.ndarray, np.ndarray]] = []
    flops = 0.0
    for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        M = rng.standard_normal((n_in, n_out)).astype(dtype)
        v = rng.standard_normal((batch, n_in)).astype(dtype)
        d = rng.standard_normal((batch, n_out)).astype(dtype)
        n_forward = 2 if (binary or layer > 0) else 1
        products += [(v, M)] * n_forward
        if layer > 0:
            products.append((d, M.T))
        products.append((v.T, d))
        flops += 2.0 * batch * n_in * n_out * (n_forward + (layer > 0) + 1)

    def run() -> None:
        for a, b in products:
            np.matmul(a, b)

    return run, flops


def param_bytes(sizes: tuple[int, ...], dtype: type) -> int:
    """Bytes of every layer's parameters (H and b)."""
    n = sum(i * o + o for i, o in zip(sizes[:-1], sizes[1:], strict=True))
    return n * np.dtype(dtype).itemsize


def random_data(n: int, dtype: type, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Inputs in [0, 1) of MNIST's width and ±1 one-hot targets for 10 classes."""
    X = rng.random((n, 784), dtype=np.float64).astype(dtype)
    # Learnable labels (a fixed random linear rule), so that training behaves as on real data.
    rule = np.random.default_rng(1).standard_normal((784, 10))
    Y = encode_targets((X @ rule).argmax(axis=1), 10, dtype)
    return X, Y


def fma_probe(dtype: type, n: int = 1024) -> tuple[Callable[[], object], float]:
    """A large square ``numpy.matmul`` (compute-bound: the FMA units' practical peak) and its
    flops per call."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty_like(a)
    return (lambda: np.matmul(a, b, out=out)), 2.0 * n**3


def tanh_probe(
    dtype: type, n: int = 64_000, calls: int = 100
) -> tuple[Callable[[], object], float]:
    """NumPy's ``np.tanh`` over the same ``n`` values in L2, ``calls`` times (its SIMD loop,
    512-bit where the CPU has AVX-512: the machine's practical tanh rate, as the matmul is its
    FMA rate), and the number of values. One call alone would time a cold cache after training."""
    a = np.random.default_rng(0).uniform(-3, 3, n).astype(dtype)
    out = np.empty_like(a)

    def run() -> None:
        for _ in range(calls):
            np.tanh(a, out=out)

    return run, float(n * calls)


def fma_throughput(dtype: type, n: int = 1024, repeats: int = 3) -> float:
    """Flop/s of :func:`fma_probe`'s matmul, best of ``repeats`` loops of ≥ 0.2 s."""
    run, flops = fma_probe(dtype, n)
    return flops / best_time(run, repeats, 0.2)


def fused_floor(
    sizes: tuple[int, ...],
    batch: int,
    dtype: type,
    binary: bool,
    flops_per_s: float,
    bw: float,
    tanh_per_s: float = np.inf,
) -> tuple[float, str]:
    """Seconds per minibatch that no implementation of the algorithm can beat, and the bound.

    Flops: the products the equations need — forward ⟨v⟩M (+ ⟨v²⟩M² where its coefficient is not
    0), backward Δ Mᵀ (layers ≥ 2), update ⟨v⟩ᵀΔ — 2 flops per multiply-add; the per-unit work
    not counted. Bytes: H read and written once per layer, M read once more by the backward pass
    (layers ≥ 2); activations are negligible. tanh: with ``tanh_per_s`` (tanh values per second)
    binary weights add one tanh per weight to the compute time (M = tanh H after each update; both
    run on the same vector units); by default tanh is not counted (the issue's floor).
    """
    item = np.dtype(dtype).itemsize
    flops = bytes_ = tanhs = 0.0
    for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        products = (2 if (binary or layer > 0) else 1) + 1 + (layer > 0)
        flops += 2.0 * batch * n_in * n_out * products
        bytes_ += (2 + (layer > 0)) * n_in * n_out * item
        tanhs += n_in * n_out if binary else 0
    t_compute, t_bytes = flops / flops_per_s + tanhs / tanh_per_s, bytes_ / bw
    return max(t_compute, t_bytes), ("flops" if t_compute >= t_bytes else "memory")


def measure_row(
    sizes: tuple[int, ...],
    weights: str,
    batch: int,
    dtype: type,
    seconds: float,
    repeats: int,
    jobs: tuple[int, ...] = (),
) -> dict[str, float]:
    """Samples/s of the NumPy core ("core"), the baseline ("baseline") and the fused kernels with
    each number of threads in ``jobs`` ("fused1", "fused2", …): interleaved, best of ``repeats``.
    With ``jobs``, also "fma": the flop/s of :func:`fma_probe` (one thread, the row's dtype), and
    "tanh": the values/s of :func:`tanh_probe`, timed in the same interleaved loop, so that the
    floor is computed from the machine's speed at the time of the row (it drifts by ±30 % between
    runs on a shared machine)."""
    rng = np.random.default_rng(0)
    net = init_network(sizes, make_family(weights), rng, dtype=dtype)
    H = [h.copy() for h in net.H]
    b = [x.copy() for x in net.b]
    # Size the measurement from a short probe so that it lasts about `seconds`.
    X, Y = random_data(max(batch * 4, 40), dtype, rng)
    t0 = time.perf_counter()
    run_minibatches_inplace(net, X, Y, np.arange(X.shape[0]), batch)
    per_sample = (time.perf_counter() - t0) / X.shape[0]
    n = int(min(N_TRAIN, max(batch * 3, seconds / per_sample)) // batch * batch)
    X, Y = random_data(n, dtype, rng)
    order = np.arange(n)
    binary = weights == "binary"

    start_H = [h.copy() for h in net.H]
    start_b = [x.copy() for x in net.b]

    def restart(H: list[np.ndarray], b: list[np.ndarray]) -> None:
        # Every measurement trains from the same start, so no run drifts into overflow.
        for layer in range(len(H)):
            np.copyto(H[layer], start_H[layer])
            np.copyto(b[layer], start_b[layer])

    def optimised() -> None:
        restart(net.H, net.b)
        for layer in range(len(net.H)):
            net.refresh_moments_inplace(layer)
        run_minibatches_inplace(net, X, Y, order, batch)

    def baseline() -> None:
        restart(H, b)
        for s in range(0, n, batch):
            baseline_step(H, b, X[s : s + batch], Y[s : s + batch], binary)

    def fused(n_jobs: int) -> Callable[[], None]:
        def run() -> None:
            restart(net.H, net.b)  # the fused loop refreshes M, M² itself on entry
            run_minibatches_fused(net, X, Y, order, batch, n_jobs=n_jobs)

        return run

    engines: dict[str, Callable[[], object]] = {"core": optimised, "baseline": baseline}
    for j in jobs:
        engines[f"fused{j}"] = fused(j)
        engines[f"fused{j}"]()  # compile outside the timing (first call: JIT)
    work = dict.fromkeys(engines, float(n))  # samples per call
    if jobs:
        engines["fma"], work["fma"] = fma_probe(dtype)
        engines["tanh"], work["tanh"] = tanh_probe(dtype)
    best = dict.fromkeys(engines, np.inf)
    for _ in range(repeats):
        for name, fn in engines.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: work[name] / t for name, t in best.items()}


def _configurations(args: argparse.Namespace):
    """(name, sizes, dtype name, dtype, weights, batch) for every row of the table."""
    for name in args.nets:
        for dtype in args.dtypes:
            for weights in args.weights:
                for batch in args.batches:
                    yield name, SIZES[name], dtype, np.dtype(dtype).type, weights, batch


def _header(args: argparse.Namespace, bandwidth: float) -> None:
    machine = platform.processor() or platform.machine()
    print(f"# {machine}, {os.cpu_count()} CPUs, numpy {np.__version__}")
    print(f"# memory bandwidth (256 MiB copy, read+write): {bandwidth / 1e9:.1f} GB/s")
    print(f"# load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"# per measurement: ≈{args.seconds:g} s of minibatches (a fraction of a 60000-sample "
        f"epoch), best of {args.repeats}, all implementations interleaved"
    )


def table(args: argparse.Namespace) -> None:
    bandwidth = copy_bandwidth()
    _header(args, bandwidth)
    header = (
        "| net | weights | batch | dtype | samples/s | floor samples/s | matmul GFLOP/s "
        "| floor bound | achieved/floor | baseline samples/s | speed-up vs baseline |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, sizes, dtype, dt, weights, batch in _configurations(args):
        run, flops = minibatch_matmuls(sizes, batch, dt, weights == "binary")
        t_matmul = best_time(run, args.repeats)
        t_memory = 4 * param_bytes(sizes, dt) / bandwidth
        floor = max(t_matmul, t_memory)
        r = measure_row(sizes, weights, batch, dt, args.seconds, args.repeats)
        opt, base = r["core"], r["baseline"]
        achieved = batch / opt
        print(
            f"| {name} | {weights} | {batch} | {dtype} | {opt:,.0f} | "
            f"{batch / floor:,.0f} | {flops / t_matmul / 1e9:.1f} | "
            f"{'matmul' if t_matmul >= t_memory else 'memory'} | "
            f"{achieved / floor:.2f} | {base:,.0f} | {opt / base:.2f} |",
            flush=True,
        )


def _package_mib(name: str) -> float:
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return float("nan")
    root = Path(spec.origin).parent
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20


def fused_table(args: argparse.Namespace) -> None:
    """Issue 13: the fused kernels against the baseline, the NumPy core and the new floor."""
    import numba

    bandwidth = copy_bandwidth()
    _header(args, bandwidth)
    print(
        f"# numba {numba.__version__}: numba + llvmlite installed size "
        f"{_package_mib('numba') + _package_mib('llvmlite'):.0f} MiB; numba threading layer "
        f"after the first parallel call is printed below"
    )
    t0 = time.perf_counter()
    tiny = init_network((784, 16, 10), make_family("binary"), np.random.default_rng(0))
    X, Y = random_data(20, np.float32, np.random.default_rng(0))
    for j in args.jobs:
        run_minibatches_fused(tiny, X, Y, np.arange(20), 10, n_jobs=j)
    compile_s = time.perf_counter() - t0
    print(f"# first calls (JIT compile, float32, n_jobs {args.jobs}): {compile_s:.1f} s")
    if max(args.jobs) > 1:
        print(f"# numba threading layer: {numba.threading_layer()}")
    peak = {dt: fma_throughput(np.dtype(dt).type) for dt in args.dtypes}
    for dt, value in peak.items():
        print(f"# FMA throughput ({dt}, 1024² matmul, 1 thread): {value / 1e9:.1f} GFLOP/s")
    print(
        "# each row's floor uses the FMA throughput measured in that row's interleaved loop "
        "(best of the same repeats), not the figure above"
    )
    print(
        "# floor + tanh: the floor with one tanh per weight of each binary layer added to its "
        "compute time, at the rate of numpy.tanh on 64,000 values in L2 (row tanh G/s), "
        "measured in the same loop; real weights have no tanh"
    )
    cols = [f"fused {j} thr samples/s" for j in args.jobs]
    header = (
        "| net | weights | batch | dtype | baseline samples/s | core samples/s | "
        + " | ".join(cols)
        + " | fused/baseline | fused/core | row FMA GFLOP/s | floor samples/s | bound "
        "| achieved/floor | row tanh G/s | achieved/(floor + tanh) |"
    )
    if len(args.jobs) > 1:
        header += f" {args.jobs[-1]} thr / {args.jobs[0]} thr |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, sizes, dtype, dt, weights, batch in _configurations(args):
        r = measure_row(sizes, weights, batch, dt, args.seconds, args.repeats, tuple(args.jobs))
        binary = weights == "binary"
        floor, bound = fused_floor(sizes, batch, dt, binary, r["fma"], bandwidth)
        with_tanh, _ = fused_floor(sizes, batch, dt, binary, r["fma"], bandwidth, r["tanh"])
        one = r[f"fused{args.jobs[0]}"]
        line = (
            f"| {name} | {weights} | {batch} | {dtype} | {r['baseline']:,.0f} | "
            f"{r['core']:,.0f} | "
            + " | ".join(f"{r[f'fused{j}']:,.0f}" for j in args.jobs)
            + f" | {one / r['baseline']:.2f} | {one / r['core']:.2f} | {r['fma'] / 1e9:.1f} | "
            f"{batch / floor:,.0f} | {bound} | {(batch / one) / floor:.2f} | "
            f"{r['tanh'] / 1e9:.2f} | {(batch / one) / with_tanh:.2f} |"
        )
        if len(args.jobs) > 1:
            line += f" {r[f'fused{args.jobs[-1]}'] / one:.2f} |"
        print(line, flush=True)


def read_idx_gz(path: Path) -> np.ndarray:
    """An IDX file (gzip) as an array; enough for the benchmark, no validation."""
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def mnist_rows(folder: Path, dtype: type, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` (default all) MNIST training images scaled to [0, 1] and their ±1 one-hot
    targets, from the gzipped IDX files in ``folder``."""
    images = read_idx_gz(folder / "train-images-idx3-ubyte.gz")[:n]
    labels = read_idx_gz(folder / "train-labels-idx1-ubyte.gz")[:n]
    X = (images.reshape(images.shape[0], -1) / np.float32(255)).astype(dtype)
    return X, encode_targets(labels.astype(np.intp), 10, dtype)


def mnist_epoch(args: argparse.Namespace) -> None:
    """One real MNIST epoch per engine, side by side from the same start and sample order.

    784-500-500-10 (``--mnist-net``), binary weights, batch 10, float32: the NumPy core, then the
    fused kernels with each number of threads in ``--jobs``; ``--no-intercept``: layers without
    biases (``fit_intercept=False``).
    """
    options = {"fit_intercept": not args.no_intercept}
    X, Y = mnist_rows(Path(args.mnist_epoch), np.float32)
    sizes = SIZES.get(args.mnist_net) or tuple(int(n) for n in args.mnist_net.split("-"))
    rng = np.random.default_rng(0)
    start = init_network(sizes, make_family("binary"), rng, dtype=np.float32, **options)
    print(f"# load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    engines: list[tuple[str, Callable[..., tuple[int, int]], dict]] = [
        ("NumPy core (reference)", run_minibatches_inplace, {})
    ]
    engines += [(f"fused, {j} thread(s)", run_minibatches_fused, {"n_jobs": j}) for j in args.jobs]
    warm = init_network(sizes, make_family("binary"), rng, dtype=np.float32, **options)
    for _, fn, kw in engines:  # compile outside the timing
        fn(warm, X[:20], Y[:20], np.arange(20), 10, **kw)
    for epoch in range(args.epochs):
        order = rng.permutation(X.shape[0])
        for label, fn, kw in engines:
            net = init_network(
                sizes, make_family("binary"), np.random.default_rng(0), dtype=np.float32, **options
            )
            for h, h0 in zip(net.H, start.H, strict=True):
                np.copyto(h, h0)
            t0 = time.perf_counter()
            _, n_errors = fn(net, X, Y, order, 10, **kw)
            elapsed = time.perf_counter() - t0
            print(
                f"{args.mnist_net} epoch {epoch + 1}, {label}: {elapsed:.2f} s "
                f"({X.shape[0] / elapsed:,.0f} samples/s), online training error "
                f"{n_errors / X.shape[0]:.4f}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--nets",
        nargs="+",
        default=["784-200-10", "784-800-800-10", "784-2000-2000-10"],
        choices=list(SIZES),
    )
    parser.add_argument("--weights", nargs="+", default=["binary", "real"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 10, 100])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--seconds", type=float, default=0.4, help="length of one measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--blas-threads", type=int, default=None, help="limit BLAS threads (threadpoolctl)"
    )
    parser.add_argument("--mnist-epoch", metavar="DIR", help="time real MNIST epochs instead")
    parser.add_argument("--mnist-net", default="784-500-500-10", help="network of --mnist-epoch")
    parser.add_argument("--no-intercept", action="store_true", help="--mnist-epoch without biases")
    parser.add_argument(
        "--jobs",
        nargs="+",
        type=int,
        default=[],
        help="time the fused kernels (ebprop.kernels) with these numbers of threads (issue 13)",
    )
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    limit = nullcontext()
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn

        limit = threadpool_limits(limits=args.blas_threads, user_api="blas")
    with limit:
        if args.blas_threads is not None:
            print(f"# BLAS threads limited to {args.blas_threads}")
        if args.mnist_epoch:
            mnist_epoch(args)
        elif args.jobs:
            fused_table(args)
        else:
            table(args)


if __name__ == "__main__":
    main()
