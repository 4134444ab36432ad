"""A quick probe of ``input_gain``: validation error of both readouts, epoch by epoch.

``--network cnn`` (the default) trains 32C5-MP2-64C5-MP2-256 (binary, batch 10, init variance 30,
precision conv bias step, pixels in [-1, 1] times the gain) on 20,000 training images drawn by
the seed, for 8 epochs, reinforcing the hidden layers (rho = 1.0005 per minibatch) after epoch 4,
and prints the mean of epochs 5-8. ``--network mlp`` trains DeepMP's 784-501-501-10 (pixels in
[0, 1] times the gain, init variance 30, reinforcement ``auto``) on the 50,000 training images
for 20 epochs and prints the mean of epochs 16-20. The estimator's own 10 % validation split
scores EBP-P and EBP-D after every epoch; no shifts, no test set. About 4 minutes of one core per
run; the full recipe is in experiments/*_gain.toml.

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
    parser.add_argument("--network", choices=("cnn", "mlp"), default="cnn")
    args = parser.parse_args()
    ds = load_dataset(args.dataset, validation=10000, download=False)
    cnn = args.network == "cnn"
    scaling = "symmetric" if cnn else "unit"
    pre = Preprocessor(scaling=scaling, input_gain=args.gain).fit(ds.X_train, ds.max_value)
    rows = np.random.default_rng(args.seed).permutation(len(ds.X_train))[:20000]
    if not cnn:
        rows = np.arange(len(ds.X_train))
    network = (
        {"architecture": "32C5-MP2-64C5-MP2-256", "conv_bias_step": "precision"}
        if cnn
        else {"hidden_layer_sizes": (501, 501)}
    )
    start = time.time()
    est = EBPClassifier(
        **network,
        init_variance=30.0,
        reinforcement="hidden=1.0005,start=4" if cnn else "auto",
        max_iter=8 if cnn else 20,
        random_state=args.seed,
        n_jobs=1,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=1000,  # never stops: every epoch is scored
    )
    est.fit(pre.transform(ds.X_train[rows]), ds.y_train[rows])
    last = 4 if cnn else 5
    p = [1 - r["val_accuracy_p"] for r in est.history_]
    d = [1 - r["val_accuracy_d"] for r in est.history_]
    print(
        f"{args.network} {args.dataset} gain {args.gain:g} seed {args.seed} | EBP-P "
        + " ".join(f"{x:.3f}" for x in p)
        + " | EBP-D "
        + " ".join(f"{x:.3f}" for x in d)
        + f" | mean of the last {last} epochs: EBP-P {np.mean(p[-last:]):.4f}, "
        + f"EBP-D {np.mean(d[-last:]):.4f}"
        + f" | {time.time() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
