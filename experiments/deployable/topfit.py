"""Probe: retrain the top layer(s) of a polarised binary network on its own deterministic features.

    python experiments/deployable/topfit.py RUN/model_d.npz N_TOP EPOCHS [RHO]

EBP trains every layer on the *probabilistic* outputs of the layer below, but the deployed
network (EBP-D) feeds the sign units' ±1 outputs upward. This keeps the bottom L − N_TOP layers
of a saved model fixed as a deterministic feature map (sign weights, sign units, its own
thresholds), computes those ±1 features for the training split, and continues EBP on the top
N_TOP layers alone (warm-started from their saved parameters; ``RHO`` a reinforcement schedule,
default none). It prints the EBP-D error of the whole network (fixed bottom + retrained top) on
validation and test after each epoch. No hardware cost: the retrained top is binary as before.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from ebprop import EBPClassifier
from ebprop.datasets import load_dataset
from ebprop.persist import load_model


def sign_features(est: EBPClassifier, X: np.ndarray, n_layers: int) -> np.ndarray:
    """±1 outputs of the first ``n_layers`` layers of the most probable network (sign(0) = +1)."""
    family = est.network().family  # its most_probable is EBP-D's weight rule
    a = X
    for H, b in zip(est.coefs_[:n_layers], est.intercepts_[:n_layers], strict=True):
        z = a @ family.most_probable(H).astype(a.dtype) + b
        a = np.where(z >= 0, 1, -1).astype(a.dtype)
    return a


def errors(est: EBPClassifier, X: dict, y: dict) -> str:
    """EBP-D validation and test error, as text."""
    err = {s: 100 * np.mean(est.predict(X[s], readout="deterministic") != y[s]) for s in X}
    return f"EBP-D val {err['val']:.2f} %, test {err['test']:.2f} %"


def main(path: str, n_top: int, epochs: int, rho: str | None = None) -> None:
    loaded = load_model(path)
    est, pre = loaded.estimator, loaded.preprocessor
    opts = loaded.metadata.get("training_options") or {}
    ds = load_dataset(
        opts["dataset"], None, validation=opts.get("validation"), seed=opts.get("seed", 0)
    )
    dt = np.dtype(est.dtype)
    splits = {"train": ds.X_train, "val": ds.X_val, "test": ds.X_test}
    X = {s: pre.transform(v, dt) for s, v in splits.items()}
    y = {"train": ds.y_train, "val": ds.y_val, "test": ds.y_test}
    keep = len(est.coefs_) - n_top
    held_out = ("val", "test")
    print(f"{path}: before: {errors(est, {s: X[s] for s in held_out}, y)}")
    F = {s: sign_features(est, X[s], keep) for s in X}
    params = est.get_params() | {
        "hidden_layer_sizes": tuple(est.hidden_layer_sizes[keep:]),
        "reinforcement": rho,
        "max_iter": 1,
    }
    top = EBPClassifier.from_parameters(
        params,
        [h.copy() for h in est.coefs_[keep:]],
        [b.copy() for b in est.intercepts_[keep:]],
        est.classes_,
    )
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        top.partial_fit(F["train"], y["train"])
        seconds = time.perf_counter() - t0
        print(f"epoch {epoch}: {errors(top, {s: F[s] for s in held_out}, y)} ({seconds:.0f} s)")


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:])
