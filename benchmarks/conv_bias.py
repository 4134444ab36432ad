"""The conv bias rule under reinforcement: the plain summed step against a precision-weighted one.

Trains the MNIST CNN of docs/conv.md (16C5-MP2-32C5-MP2-128, binary, batch 10, init variance 30,
pixels in [-1, 1], one-pixel shifts) on the 50,000 training images for ``--epochs`` epochs,
reinforcing the hidden layers (rho = 1.0001) after epoch ``--start``, with the conv biases moved
either by the plain sum of their B*P terms (``plain``: ebprop's rule) or by the precision-weighted
step of ``ConvNetwork.bias_precision`` (``precision``; docs in ebprop/core/convnet.py). Prints,
per epoch, the validation errors (the 10,000 validation images; the test set is not touched),
the first conv layer's largest |bias|, its channels that are constant on 300 validation images
("dead"), and the per-minibatch bias moves of that layer (median, 99th percentile, largest).

    EBPROP_DATA=... python benchmarks/conv_bias.py --rule precision --seed 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ebprop import EBPClassifier
from ebprop.core.convnet import conv_forward, conv_step_inplace
from ebprop.datasets import load_dataset
from ebprop.datasets.augment import epoch_shifts, shift_images


def symmetric(images: np.ndarray) -> np.ndarray:
    return (images.reshape(len(images), -1) / 127.5 - 1.0).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rule", choices=("plain", "precision"), required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=24)
    parser.add_argument("--start", type=int, default=10)
    args = parser.parse_args()
    ds = load_dataset("mnist")
    X_va = symmetric(ds.X_val)
    n = len(ds.y_train)
    Y = -np.ones((n, 10), np.float32)
    Y[np.arange(n), ds.y_train] = 1.0
    est = EBPClassifier(
        architecture="16C5-MP2-32C5-MP2-128", init_variance=30, random_state=args.seed
    )
    est.init_parameters(X_va.shape[1], np.arange(10))
    net = est.network()
    if args.rule == "precision":
        net.bias_precision = [np.ones(b.shape) for b in net.b]
    rng = np.random.default_rng(args.seed)
    print(
        "| rule | epoch | val EBP-P % | val EBP-D % | max abs b, layer 1 | dead channels | "
        "bias move per minibatch: median / 99 % / max | CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for epoch in range(1, args.epochs + 1):
        rho = [1.0001] * (len(net.H) - 1) + [1.0] if epoch > args.start else None
        X = symmetric(shift_images(ds.X_train, epoch_shifts(n, 1, args.seed, epoch)))
        order, moves = rng.permutation(n), []
        t = time.process_time()  # CPU time: the machine is shared
        for i in range(0, n, 10):
            idx, b0 = order[i : i + 10], net.b[0].copy()
            conv_step_inplace(net, X[idx], Y[idx], 0.0, rho)
            moves.append(np.abs(net.b[0] - b0).max())
        seconds = time.process_time() - t
        p = 100 * np.mean(est.predict(X_va) != ds.y_val)
        d = 100 * np.mean(est.predict(X_va, "deterministic") != ds.y_val)
        v = conv_forward(net, X_va[:300])[0].v.reshape(-1, net.b[0].size)
        dead = int(np.sum((v.min(axis=0) > 0.99) | (v.max(axis=0) < -0.99)))
        q50, q99 = np.quantile(moves, [0.5, 0.99])
        print(
            f"| {args.rule} | {epoch} | {p:.2f} | {d:.2f} | {np.abs(net.b[0]).max():.1f} | "
            f"{dead} | {q50:.3f} / {q99:.3f} / {max(moves):.2f} | {seconds:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
