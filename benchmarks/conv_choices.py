"""Tempering of the conv update and max-pool vs stride-2, measured on an MNIST subset.

Trains binary CNNs by EBP on the first ``--train`` MNIST training images for ``--epochs``
epochs and reports the error on ``--val`` MNIST training images from 50,000 on (never trained
on here; the official test set is not touched), for:

- the conv update summed over positions (untempered), divided by √positions, by positions;
- 2×2 max-pooling against stride-2 convolutions;
- initial variance 30 (the dense deployable recipe's) against the default 1;
- pixels scaled to [0, 1] (``unit``) against [-1, 1] (``symmetric``: x = 2u - 1).

    EBPROP_DATA=... python benchmarks/conv_choices.py --train 10000 --epochs 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ebprop import EBPClassifier
from ebprop.datasets import load_dataset

VARIANTS = [
    # (label, architecture, temper γ, init_variance, pixels in [-1, 1])
    ("max-pool, untempered", "16C5-MP2-32C5-MP2-128", 0.0, 30.0, False),
    ("max-pool, ÷ √positions", "16C5-MP2-32C5-MP2-128", 0.5, 30.0, False),
    ("max-pool, ÷ positions", "16C5-MP2-32C5-MP2-128", 1.0, 30.0, False),
    ("stride 2, untempered", "16C5s2-32C5s2-128", 0.0, 30.0, False),
    ("max-pool, untempered, init variance 1", "16C5-MP2-32C5-MP2-128", 0.0, 1.0, False),
    ("max-pool, untempered, pixels in [−1, 1]", "16C5-MP2-32C5-MP2-128", 0.0, 30.0, True),
    ("stride 2, untempered, pixels in [−1, 1]", "16C5s2-32C5s2-128", 0.0, 30.0, True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--val", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ds = load_dataset("mnist")
    images = np.concatenate([ds.X_train, ds.X_val]) if len(ds.y_val) else ds.X_train
    labels = np.concatenate([ds.y_train, ds.y_val]) if len(ds.y_val) else ds.y_train
    X = (images.reshape(len(images), -1) / 255.0).astype(np.float32)
    y_tr, y_va = labels[: args.train], labels[50000 : 50000 + args.val]
    print("| variant | epoch | val EBP-P % | val EBP-D % | CPU s/epoch |")
    print("|---|---|---|---|---|")
    for label, arch, temper, iv, symmetric in VARIANTS:
        Xs = 2 * X - 1 if symmetric else X
        X_tr, X_va = Xs[: args.train], Xs[50000 : 50000 + args.val]
        est = EBPClassifier(architecture=arch, init_variance=iv, random_state=args.seed)
        est.init_parameters(X_tr.shape[1], np.arange(10))
        est.network().temper = temper
        for epoch in range(1, args.epochs + 1):
            t = time.process_time()  # CPU time: the machine is shared, wall time is not ours
            est.partial_fit(X_tr, y_tr)
            seconds = time.process_time() - t
            p = 100 * np.mean(est.predict(X_va) != y_va)
            d = 100 * np.mean(est.predict(X_va, "deterministic") != y_va)
            print(f"| {label} | {epoch} | {p:.2f} | {d:.2f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
