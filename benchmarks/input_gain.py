"""A quick probe of ``input_gain`` on the wide binary CNN: validation error of both readouts.

Trains 32C5-MP2-64C5-MP2-256 (binary, batch 10, init variance 30, precision conv bias step,
pixels in [-1, 1] times the gain) on 20,000 training images drawn by the seed, for 8 epochs,
reinforcing the hidden layers (rho = 1.0005 per minibatch) after epoch 4; the estimator's own
10 % validation split scores EBP-P and EBP-D after every epoch. No shifts, no test set. About 4
minutes of one core per run; the full recipe is in experiments/*_gain.toml.

    EBPROP_DATA=... python benchmarks/input_gain.py fashion-mnist 3 0
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ebprop import EBPClassifier
from ebprop.datasets import Preprocessor, load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=("mnist", "fashion-mnist"))
    parser.add_argument("gain", type=float)
    parser.add_argument("seed", type=int)
    args = parser.parse_args()
    ds = load_dataset(args.dataset, validation=10000, download=False)
    pre = Preprocessor(scaling="symmetric", input_gain=args.gain).fit(ds.X_train, ds.max_value)
    rows = np.random.default_rng(args.seed).permutation(len(ds.X_train))[:20000]
    start = time.time()
    est = EBPClassifier(
        architecture="32C5-MP2-64C5-MP2-256",
        init_variance=30.0,
        conv_bias_step="precision",
        reinforcement="hidden=1.0005,start=4",
        max_iter=8,
        random_state=args.seed,
        n_jobs=1,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=100,  # never stops: every epoch is scored
    )
    est.fit(pre.transform(ds.X_train[rows]), ds.y_train[rows])
    p = [1 - r["val_accuracy_p"] for r in est.history_]
    d = [1 - r["val_accuracy_d"] for r in est.history_]
    print(
        f"{args.dataset} gain {args.gain:g} seed {args.seed} | EBP-P "
        + " ".join(f"{x:.3f}" for x in p)
        + " | EBP-D "
        + " ".join(f"{x:.3f}" for x in d)
        + f" | mean of epochs 5-8: EBP-P {np.mean(p[4:]):.4f}, EBP-D {np.mean(d[4:]):.4f}"
        + f" | {time.time() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
