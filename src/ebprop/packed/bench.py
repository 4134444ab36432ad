"""Side-by-side throughput of the packed runtime and the float32 EBP-D path, in one run."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from ..core import BinaryWeights, ConvNetwork, Network, predict_deterministic
from .runtime import PackedNetwork


def _best_rate(
    fn: Callable[[np.ndarray], Any], images: np.ndarray, batch: int, repeats: int, budget_s: float
) -> float:
    """Images per second, best of ``repeats`` rounds; batch 1 runs image by image."""
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        done = 0
        if batch == 1:
            for i in range(len(images)):
                fn(images[i : i + 1])
                done += 1
                if time.perf_counter() - t0 > budget_s:
                    break
        else:
            fn(images[:batch])
            done = batch
        best = max(best, done / (time.perf_counter() - t0))
    return best


def tile_images(images: np.ndarray, n: int) -> np.ndarray:
    """Repeat ``images`` (m, ...) cyclically to exactly ``n`` rows."""
    reps = -(-n // len(images))
    return np.concatenate([images] * reps)[:n] if reps > 1 else images[:n]


def benchmark_inference(
    estimator: Any,
    preprocessor: Any,
    images: np.ndarray,
    batch_sizes: Sequence[int] = (1, 10_000),
    repeats: int = 3,
    batch1_images: int = 2_000,
    backends: Sequence[str] = ("numba", "numpy"),
) -> list[dict]:
    """Measure images/s of the packed runtime(s) and the float32 EBP-D path on raw images.

    Every path starts from raw uint8 pixels and ends at class indices. ``float32`` includes
    the preprocessing (pixels → float32 features); ``float32 (model only)`` times the network
    alone on precomputed features. Float rates are the better of default BLAS threading and one
    BLAS thread. The first calls of each path (compilation, caches) are excluded.

    Parameters
    ----------
    images : ndarray uint8 (n, h, w)
        Tiled to the largest batch size.

    Returns
    -------
    list of dict: ``path``, ``batch``, ``images_per_s``.
    """
    big = max(batch_sizes)
    pixels = tile_images(np.asarray(images), big)
    dtype = np.dtype(np.float32)
    H = [np.asarray(h, dtype=dtype) for h in estimator.coefs_]
    biases = getattr(estimator, "deterministic_intercepts_", None) or estimator.intercepts_
    b = [np.asarray(x, dtype=dtype).reshape(-1) for x in biases]
    net = estimator.network()
    if isinstance(net, ConvNetwork):  # a CNN: the same layers in float32; NumPy kernels only
        net32 = ConvNetwork(BinaryWeights(), net.specs, net.input_shape, H, b)
        backends = ("numpy",)
    else:
        net32 = Network(family=BinaryWeights(), H=H, b=b)
    W = [net32.family.most_probable(h) for h in H]

    def float_path(x: np.ndarray) -> np.ndarray:
        feats = preprocessor.transform(x, dtype)
        return predict_deterministic(net32, feats, W).argmax(axis=1)

    feats_all = preprocessor.transform(pixels, dtype)

    def float_model_only(idx_images: np.ndarray) -> np.ndarray:
        return predict_deterministic(net32, idx_images, W).argmax(axis=1)

    paths: list[tuple[str, Callable, np.ndarray]] = []
    for backend in backends:
        packed = PackedNetwork.from_estimator(estimator, preprocessor, backend=backend)
        paths.append((f"packed ({backend})", packed.decision_function, pixels))
    paths.append(("float32", float_path, pixels))
    paths.append(("float32 (model only)", float_model_only, feats_all))
    rows = []
    for name, fn, data in paths:
        fn(data[:2])  # warm-up: compilation, BLAS threads
        fn(data[: min(len(data), 256)])
        for batch in batch_sizes:
            sample = data[:batch1_images] if batch == 1 else data
            rate = _best_rate(fn, sample, batch, repeats, budget_s=2.0)
            if name.startswith("float32"):
                # The float path's best case: BLAS threads can lose to one thread on small
                # batches or a busy machine, so keep the better of the two.
                with threadpool_limits(limits=1, user_api="blas"):
                    rate = max(rate, _best_rate(fn, sample, batch, repeats, budget_s=2.0))
            rows.append({"path": name, "batch": batch, "images_per_s": rate})
    return rows
