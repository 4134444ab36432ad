"""One-core training speed of a binary CNN: EBP (batch 10) beside torch BinaryConnect (batch 100).

Both train the same architecture (default 16C5-MP2-32C5-MP2-128-10) on the same MNIST-shaped
inputs in one process, one thread each, alternating rounds so that both see the same machine
load; CPU seconds are reported (the machine may be shared), with images/s and the implied time
of a 60,000-image epoch. BinaryConnect is the baselines' own network for the same
architecture string (:mod:`ebprop.baselines.convnet`): sign weights in the forward pass, the
straight-through gradient to real weights clipped to [-1, 1], Adam, max-pooling and ReLU in
torch's float32 (Courbariaux, Bengio & David 2015); without batch normalisation unless
``--batch-norm``.

    python benchmarks/conv_speed.py --images 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from ebprop.core import BinaryWeights, conv_step_inplace, init_conv_network
from ebprop.core.architecture import DenseSpec, parse_architecture
from ebprop.trainer import conv_layer_stats


def ebp_seconds(specs, X, Y, compiled: bool) -> float:
    """CPU seconds of one EBP pass over (X, Y) at batch 10: with the unit statistics that
    training uses where the kernels run (``compiled``, :func:`ebprop.trainer.conv_layer_stats`),
    or the NumPy core's alone."""
    net = init_conv_network(specs, (28, 28, 1), BinaryWeights(), np.random.default_rng(0))
    stats = conv_layer_stats(net, None if compiled else 0)
    conv_step_inplace(net, X[:10], Y[:10], layer_stats=stats)  # compiles once, before the clock
    t = time.process_time()
    for s in range(0, len(X), 10):
        conv_step_inplace(net, X[s : s + 10], Y[s : s + 10], layer_stats=stats)
    return time.process_time() - t


def torch_seconds(architecture: str, X, y, batch_norm: bool) -> float:
    """CPU seconds of one pass of torch BinaryConnect over (X, y) at batch 100: the baselines'
    own network (:func:`ebprop.baselines.torch_mlp.build_model`, as ``ebprop sweep`` trains it
    with ``method = "binaryconnect"``), Adam, the shadow weights clipped after every step."""
    import torch

    from ebprop.baselines import BaselineOptions
    from ebprop.baselines.torch_mlp import build_model

    options = BaselineOptions(
        method="binaryconnect", architecture=architecture, batch_norm=batch_norm
    )
    model = build_model(X.shape[1], 10, options, None, (28, 28, 1)).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt = torch.from_numpy(X)
    yt = torch.from_numpy(y)
    t = time.process_time()
    for s in range(0, len(X), 100):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt[s : s + 100]), yt[s : s + 100])
        loss.backward()
        opt.step()
        model.clip_inplace()
    return time.process_time() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="16C5-MP2-32C5-MP2-128")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--batch-norm", action="store_true", help="BinaryConnect with batch normalisation"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    specs = parse_architecture(args.architecture) + (DenseSpec(10),)
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, size=(args.images, 784)).astype(np.float32)
    y = rng.integers(0, 10, size=args.images)
    Y = np.full((args.images, 10), -1.0, np.float32)
    Y[np.arange(args.images), y] = 1.0
    ebp, core, bc = [], [], []
    for _ in range(args.rounds):
        ebp.append(ebp_seconds(specs, X, Y, compiled=True))
        core.append(ebp_seconds(specs, X, Y, compiled=False))
        bc.append(torch_seconds(args.architecture, X, y, args.batch_norm))
    for name, secs in (
        ("EBP, batch 10 (as trained: compiled unit statistics)", ebp),
        ("EBP, batch 10, NumPy core alone", core),
        ("BinaryConnect (torch), batch 100", bc),
    ):
        best = min(secs)
        print(f"{name}: {args.images / best:,.0f} images/s (best of {args.rounds} CPU times), "
              f"60,000-image epoch {60000 * best / args.images:.0f} s")  # fmt: skip
    print(f"EBP / BinaryConnect time per image: {min(ebp) / min(bc):.2f}x "
          f"(NumPy core alone: {min(core) / min(bc):.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
