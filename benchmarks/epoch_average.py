"""EBP-D read from the epoch-averaged posterior: does it sit lower than EBP-D at the epoch's end?

Under reinforcement the deployed network (EBP-D: the signs of M = tanh H, the biases as
thresholds) moves by up to a point of validation error from epoch to epoch. This continues a
finished binary run (its ``last.npz``) for a few more epochs of the same recipe (batch size,
reinforcement schedule, the run's shifts; a new sample order) and, after each epoch, reads the
validation images four ways: EBP-D of the network as it ends the epoch; EBP-D of the averages
over the epoch's minibatches of M and of b (sign of the mean M, a majority vote of each weight's
sign over the epoch, and the mean threshold); the averaged output layer alone; the averaged
hidden layers alone. The run's folder is read, never written; the test set is not touched.

    EBPROP_DATA=... python benchmarks/epoch_average.py RUN --dataset fashion-mnist --epochs 4

Prints a Markdown table (validation error %, one row per extra epoch).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ebprop.core.predict import predict_deterministic
from ebprop.datasets import load_dataset
from ebprop.datasets.augment import epoch_shifts, shift_images
from ebprop.persist import load_model
from ebprop.trainer import encode_targets, n_outputs


class EpochMean:
    """The running sums of every layer's M and b over an epoch's minibatches."""

    def __init__(self, net) -> None:
        self.net = net
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.M = [np.zeros(h.shape, np.float64) for h in self.net.H]
        self.b = [np.zeros(b.shape, np.float64) for b in self.net.b]

    def add(self, position: int, errors: int) -> None:
        """A ``train_epoch`` callback: one more minibatch trained (its M = tanh H, b)."""
        for total, h in zip(self.M, self.net.H, strict=True):
            total += np.tanh(h)
        for total, b in zip(self.b, self.net.b, strict=True):
            total += b
        self.count += 1

    def signs_and_biases(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """sign(mean M) (sign 0 = +1, as EBP-D's) and mean b, in the network's dtype."""
        dtype = self.net.H[0].dtype
        W = [np.where(m >= 0, 1.0, -1.0).astype(dtype) for m in self.M]
        return W, [(b / self.count).astype(dtype) for b in self.b]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished run folder (reads last.npz, options)")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--validation", type=int, default=10000, help="the run's validation size")
    parser.add_argument("--epochs", type=int, default=4, help="extra epochs to train")
    args = parser.parse_args()
    options = json.loads((args.run / "options.json").read_text())
    loaded = load_model(args.run / "last.npz")
    est, pre = loaded.estimator, loaded.preprocessor
    if est.weights != "binary":
        parser.error(f"{args.run}: weights are {est.weights!r}; this reads binary runs")
    ds = load_dataset(args.dataset, args.data_dir, validation=args.validation, download=False)
    dtype = np.dtype(est.dtype)
    X_val = pre.transform(ds.X_val, dtype)
    target = np.searchsorted(est.classes_, ds.y_val)
    Y = encode_targets(
        np.searchsorted(est.classes_, ds.y_train), n_outputs(len(est.classes_)), dtype
    )
    trainer = est.trainer()
    net = trainer.net
    mean = EpochMean(net)
    shift = int(options.get("augment_shift") or 0)
    seed = int(options.get("seed") or 0)

    def error(weights=None, biases=None) -> float:
        z = predict_deterministic(net, X_val, weights, biases)
        return 100.0 * float(np.mean(z.argmax(axis=1) != target))

    print(f"{args.run}: {args.epochs} epochs after epoch {trainer.epoch}")
    print(
        "| epoch | EBP-D at the epoch's end | averaged M and b | output layer averaged |"
        " hidden layers averaged |"
    )
    print("|---:|---:|---:|---:|---:|")
    for _ in range(args.epochs):
        images = ds.X_train
        if shift:  # the run's shifts continue: the same stream, the next epochs' draws
            images = shift_images(images, epoch_shifts(len(images), shift, seed, trainer.epoch + 1))
        X = pre.transform(images, dtype)
        mean.reset()
        trainer.train_epoch(X, Y, on_batch=mean.add)
        W, b = mean.signs_and_biases()
        now_W = [net.family.most_probable(h) for h in net.H]
        last = len(W) - 1
        row = [
            error(),
            error(W, b),
            error(now_W[:last] + W[last:], net.b[:last] + b[last:]),
            error(W[:last] + now_W[last:], b[:last] + net.b[last:]),
        ]
        print(f"| {trainer.epoch} | " + " | ".join(f"{x:.2f}" for x in row) + " |", flush=True)


if __name__ == "__main__":
    main()
