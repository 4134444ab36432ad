"""Write tests/data/update_reference.json: SHA-256 digests of arrays trained by the update as it
was before the overshoot control (issue 32), for tests/test_stable_update.py's bit-identity
check.

    PYTHONPATH=src python tests/data/make_update_reference.py

Run once with the old code; the file is committed. Each case trains an EBPClassifier on the
bundled digits (pixels / 16, the first 600 images) and stores the digest of its coefs_ and
intercepts_ (:func:`digest`: dtype, shape and bytes of every array).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from ebprop import EBPClassifier

#: name -> estimator keyword arguments. Under the overshoot control none of these minibatches
#: has γ < 1 (tests/test_stable_update.py checks it), so the arrays must not change.
CASES = {
    "bin_h100_b5_np": dict(hidden_layer_sizes=(100,), batch_size=5, n_jobs=0),
    "bin_h100_b5_fused": dict(hidden_layer_sizes=(100,), batch_size=5, n_jobs=1),
    "bin_h100_b3_f64_np": dict(hidden_layer_sizes=(100,), batch_size=3, n_jobs=0,
                               dtype="float64"),
    "bin_h100_b3_f64_fused": dict(hidden_layer_sizes=(100,), batch_size=3, n_jobs=1,
                                  dtype="float64"),
    "bin_h100x100_b4_fused": dict(hidden_layer_sizes=(100, 100), batch_size=4, n_jobs=1),
    "bin_h100_b5_drop_np": dict(hidden_layer_sizes=(100,), batch_size=5, n_jobs=0,
                                input_dropout=0.8),
    "bin_h100_b5_drop_fused": dict(hidden_layer_sizes=(100,), batch_size=5, n_jobs=1,
                                   input_dropout=0.8),
    "bin_h100_b5_reinf_np": dict(hidden_layer_sizes=(100,), batch_size=5, n_jobs=0,
                                 reinforcement="hidden=1.001,start=1"),
    "bin_h100_b5_reinf_fused": dict(hidden_layer_sizes=(100,), batch_size=5, n_jobs=1,
                                    reinforcement="hidden=1.001,start=1"),
    "real_h100_b3_np": dict(hidden_layer_sizes=(100,), weights="real", batch_size=3, n_jobs=0),
    "real_h100_b3_fused": dict(hidden_layer_sizes=(100,), weights="real", batch_size=3,
                               n_jobs=1),
    "bin_h64_b2_np": dict(hidden_layer_sizes=(64,), batch_size=2, n_jobs=0),
    "bin_none_b1_fused": dict(hidden_layer_sizes=(), batch_size=1, n_jobs=1),
    "real_none_b1_np": dict(hidden_layer_sizes=(), weights="real", batch_size=1, n_jobs=0),
}  # fmt: skip


def data() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return (X[:600] / 16.0), y[:600]


def train(kwargs: dict) -> EBPClassifier:
    X, y = data()
    return EBPClassifier(max_iter=3, random_state=7, **kwargs).fit(X, y)


def digest(est: EBPClassifier) -> str:
    """SHA-256 over every coefs_ and intercepts_ array's dtype, shape and bytes."""
    h = hashlib.sha256()
    for a in (*est.coefs_, *est.intercepts_):
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def main() -> None:
    out = {}
    for name, kwargs in CASES.items():
        out[name] = digest(train(kwargs))
        print(name, file=sys.stderr)
    path = Path(__file__).with_name("update_reference.json")
    path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
