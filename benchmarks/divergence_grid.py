"""Divergences of the summed minibatch update, with and without the overshoot control (issue 32).

    nice -n 10 env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        EBPROP_DATA=<folder holding mnist/> python benchmarks/divergence_grid.py

The grid of issue 32, each run ``--epochs`` (3) epochs of binary-weight ``EBPClassifier`` on the
train split, scored on the test split:

* digits (the bundled 8x8 digits, pixels / 16, the first 1,400 images to train, the other 397 to
  test): hidden ∈ {none, 4, 8, 16, 32, 64} × batch ∈ {1, 10, 32, 100} × seeds 0–9;
* MNIST (pixels / 255, 60,000 to train, the 10,000 test images): hidden ∈ {none, 10, 50, 500} ×
  batch ∈ {10, 100} × seeds 0–2.

A run *diverged* when an epoch ended with a DivergenceWarning (parameters at the bound) or
with NaN/Inf parameters. ``--update old`` trains with γ forced to 1 (the update before the
overshoot control; the NumPy loop, which the compiled loop matches to round-off), ``new`` with the
control (the compiled loop with one thread when numba is installed), ``both`` (default) side by
side. At batch 1 γ is 1 by construction (one sample's T ≤ 1, :mod:`ebprop.core.overshoot`), so
the old update is the new one there and is not trained again ("= new"). Prints one Markdown table
per data set: diverged runs out of the seeds, and the mean test error of the runs, per update.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

import ebprop.core.step as step_module
from ebprop import EBPClassifier
from ebprop.trainer import DivergenceWarning

try:  # the compiled loop for the new update where numba is installed (same update, faster)
    import numba  # noqa: F401

    NEW_JOBS: int | None = 1
except ImportError:
    NEW_JOBS = None

GRIDS = {
    "digits": dict(hidden=[(), (4,), (8,), (16,), (32,), (64,)], batch=[1, 10, 32, 100], seeds=10),
    "mnist": dict(hidden=[(), (10,), (50,), (500,)], batch=[10, 100], seeds=3),
}


def load(name: str) -> tuple[np.ndarray, ...]:
    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X = (X / 16.0).astype(np.float32)
        return X[:1400], y[:1400], X[1400:], y[1400:]
    from ebprop.datasets import load_dataset

    ds = load_dataset("mnist", data_dir=os.environ.get("EBPROP_DATA"), download=False)

    def flat(a: np.ndarray) -> np.ndarray:
        return (a.reshape(a.shape[0], -1) / float(ds.max_value)).astype(np.float32)

    return flat(ds.X_train), ds.y_train, flat(ds.X_test), ds.y_test


def run(data, hidden, batch, seed, epochs, update) -> tuple[bool, float]:
    Xtr, ytr, Xte, yte = data
    saved = step_module.overshoot_gain
    if update == "old":
        step_module.overshoot_gain = lambda *args: 1.0
    try:
        est = EBPClassifier(
            hidden, batch_size=batch, max_iter=epochs, random_state=seed,
            n_jobs=0 if update == "old" else NEW_JOBS,
        )  # fmt: skip
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DivergenceWarning)
            try:
                est.fit(Xtr, ytr)
            except FloatingPointError:
                return True, float("nan")
    finally:
        step_module.overshoot_gain = saved
    bad = any(issubclass(w.category, DivergenceWarning) for w in caught)
    return bad, float(np.mean(est.predict(Xte) != yte))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["digits", "mnist", "both"], default="both")
    parser.add_argument("--update", choices=["old", "new", "both"], default="both")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--seeds", type=int, default=None, help="seeds 0..N-1 (default: the grid's)"
    )
    args = parser.parse_args()
    updates = ["old", "new"] if args.update == "both" else [args.update]
    for name in ["digits", "mnist"] if args.data == "both" else [args.data]:
        grid, data = GRIDS[name], load(name)
        count = args.seeds if args.seeds is not None else grid["seeds"]
        seeds = range(args.first_seed, args.first_seed + count)
        totals = {u: 0 for u in updates}
        t0 = time.perf_counter()
        print(
            f"\n{name}: diverged runs of {len(seeds)} seeds (mean test error), {args.epochs} epochs"
        )
        head = " | ".join(f"batch {b} {u}" for b in grid["batch"] for u in updates)
        print(f"| hidden | {head} |")
        print("|---|" + "---|" * (len(grid["batch"]) * len(updates)))
        for hidden in grid["hidden"]:
            cells = []
            for batch in grid["batch"]:
                for u in updates:
                    if u == "old" and batch == 1 and "new" in updates:
                        cells.append("= new")
                        continue
                    res = [run(data, hidden, batch, s, args.epochs, u) for s in seeds]
                    n_bad = sum(bad for bad, _ in res)
                    totals[u] += n_bad
                    if u == "new" and batch == 1 and "old" in updates:
                        totals["old"] += n_bad
                    err = (
                        np.nanmean([e for _, e in res])
                        if any(np.isfinite(e) for _, e in res)
                        else np.nan
                    )
                    cells.append(f"{n_bad}/{len(seeds)} ({100 * err:.1f} %)")
            label = " ".join(map(str, hidden)) or "none"
            print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
        runs = len(grid["hidden"]) * len(grid["batch"]) * len(seeds)
        summary = ", ".join(f"{u}: {totals[u]} of {runs} runs diverged" for u in updates)
        print(f"{name} total: {summary} ({time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
