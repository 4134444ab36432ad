"""EBP-D validation/test error of saved models before and after the post-hoc threshold refit.

    python experiments/deployable/refit_eval.py RUN_DIR/model.npz [...] [--data-dir DIR]

The thresholds are fitted on the training split only (validation chooses, test is reported).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from ebprop.datasets import load_dataset
from ebprop.persist import load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--data-dir")
    ap.add_argument("--n-fit", type=int, default=50000, help="training images used to fit")
    args = ap.parse_args()
    cache = {}
    for path in args.models:
        m = load_model(path)
        est, pre = m.estimator, m.preprocessor
        opts = m.metadata.get("training_options") or {}
        key = (opts.get("dataset"), opts.get("validation"), opts.get("seed"))
        if key not in cache:
            cache[key] = load_dataset(
                opts["dataset"],
                args.data_dir,
                validation=opts.get("validation"),
                seed=opts.get("seed", 0),
            )
        ds = cache[key]
        dt = np.dtype(est.dtype)
        Xtr = pre.transform(ds.X_train[: args.n_fit], dt)
        Xva, Xte = pre.transform(ds.X_val, dt), pre.transform(ds.X_test, dt)

        def err(X, y, readout="deterministic", est=est):
            return float(np.mean(est.predict(X, readout=readout) != y))

        row = {"model": path, "val_d": err(Xva, ds.y_val), "test_d": err(Xte, ds.y_test)}
        est.refit_deterministic(Xtr)  # the EBP-D readout now uses the refitted thresholds
        row |= {
            "val_d_refit": err(Xva, ds.y_val),
            "test_d_refit": err(Xte, ds.y_test),
            "val_p": err(Xva, ds.y_val, "probabilistic"),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
