"""Write tests/data/update_reference.npz: arrays trained by the update as it was before the
overshoot control (issue 32), for tests/test_stable_update.py's bit-identity check.

    PYTHONPATH=src python tests/data/make_update_reference.py

Run once with the old code; the file is committed. Each case trains an EBPClassifier on the
bundled digits (pixels / 16, the first 600 images) and stores its coefs_ and intercepts_.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from ebprop import EBPClassifier

#: name -> estimator keyword arguments; every case ran without a DivergenceWarning.
CASES = {
    "bin_h16_b10_f32_np": dict(hidden_layer_sizes=(16,), batch_size=10, n_jobs=0),
    "bin_h16_b10_f32_fused": dict(hidden_layer_sizes=(16,), batch_size=10, n_jobs=1),
    "bin_h32_b1_f64_np": dict(hidden_layer_sizes=(32,), batch_size=1, n_jobs=0, dtype="float64"),
    "bin_h32x32_b10_f64_fused": dict(
        hidden_layer_sizes=(32, 32), batch_size=10, n_jobs=1, dtype="float64"
    ),
    "bin_h64_b10_drop_np": dict(hidden_layer_sizes=(64,), batch_size=10, n_jobs=0,
                                input_dropout=0.8),
    "bin_h64_b10_drop_fused": dict(hidden_layer_sizes=(64,), batch_size=10, n_jobs=1,
                                   input_dropout=0.8),
    "bin_h64_b10_reinf_np": dict(hidden_layer_sizes=(64,), batch_size=10, n_jobs=0,
                                 reinforcement="hidden=1.001,start=1"),
    "bin_h64_b10_reinf_fused": dict(hidden_layer_sizes=(64,), batch_size=10, n_jobs=1,
                                    reinforcement="hidden=1.001,start=1"),
    "real_h32_b10_np": dict(hidden_layer_sizes=(32,), weights="real", batch_size=10, n_jobs=0),
    "real_h32_b10_fused": dict(hidden_layer_sizes=(32,), weights="real", batch_size=10,
                               n_jobs=1),
    "bin_h200_b5_f32_fused": dict(hidden_layer_sizes=(200,), batch_size=5, n_jobs=1),
}  # fmt: skip


def data() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return (X[:600] / 16.0), y[:600]


def train(kwargs: dict) -> EBPClassifier:
    X, y = data()
    return EBPClassifier(max_iter=3, random_state=7, **kwargs).fit(X, y)


def main() -> None:
    out = {}
    for name, kwargs in CASES.items():
        est = train(kwargs)
        for i, (c, b) in enumerate(zip(est.coefs_, est.intercepts_, strict=True)):
            out[f"{name}/H{i}"] = c
            out[f"{name}/b{i}"] = b
        print(name, file=sys.stderr)
    np.savez_compressed(Path(__file__).with_name("update_reference.npz"), **out)


if __name__ == "__main__":
    main()
