"""One-core training speed of a binary CNN: EBP (batch 10) beside torch BinaryConnect (batch 100).

Both train the same architecture (default 16C5-MP2-32C5-MP2-128-10) on the same MNIST-shaped
inputs in one process, one thread each, alternating rounds so that both see the same machine
load; CPU seconds are reported (the machine may be shared), with images/s and the implied time
of a 60,000-image epoch. BinaryConnect here: sign weights in the forward pass, the
straight-through gradient to real weights clipped to [-1, 1], Adam, ReLU and max-pooling in
torch's float32 (Courbariaux, Bengio & David 2015).

    python benchmarks/conv_speed.py --images 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from ebprop.core import BinaryWeights, conv_step_inplace, init_conv_network
from ebprop.core.architecture import ConvSpec, DenseSpec, PoolSpec, parse_architecture


def ebp_seconds(specs, X, Y) -> float:
    net = init_conv_network(specs, (28, 28, 1), BinaryWeights(), np.random.default_rng(0))
    t = time.process_time()
    for s in range(0, len(X), 10):
        conv_step_inplace(net, X[s : s + 10], Y[s : s + 10])
    return time.process_time() - t


def torch_seconds(specs, X, y) -> float:
    import torch
    from torch import nn

    class BinaryLinearFn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, w):
            return torch.where(w >= 0, 1.0, -1.0)

        @staticmethod
        def backward(ctx, g):
            return g

    class BConv(nn.Conv2d):
        def forward(self, x):
            return self._conv_forward(x, BinaryLinearFn.apply(self.weight), self.bias)

    class BLinear(nn.Linear):
        def forward(self, x):
            return nn.functional.linear(x, BinaryLinearFn.apply(self.weight), self.bias)

    layers, channels, side = [], 1, 28
    for spec in specs:
        if isinstance(spec, ConvSpec):
            layers += [BConv(channels, spec.channels, spec.kernel, spec.stride, spec.pad)]
            channels = spec.channels
            side = (side + 2 * spec.pad - spec.kernel) // spec.stride + 1
        elif isinstance(spec, PoolSpec):
            layers += [nn.MaxPool2d(spec.size)]
            side //= spec.size
        else:
            if not any(isinstance(m, nn.Flatten) for m in layers):
                layers += [nn.Flatten()]
                width = channels * side * side
            layers += [BLinear(width, spec.units)]
            width = spec.units
        if not isinstance(spec, PoolSpec) and spec is not specs[-1]:
            layers += [nn.ReLU()]
    model = nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt = torch.from_numpy(X.reshape(-1, 1, 28, 28))
    yt = torch.from_numpy(y)
    t = time.process_time()
    for s in range(0, len(X), 100):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xt[s : s + 100]), yt[s : s + 100])
        loss.backward()
        opt.step()
        with torch.no_grad():
            for p in model.parameters():
                p.clamp_(-1, 1)
    return time.process_time() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="16C5-MP2-32C5-MP2-128")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
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
    ebp, bc = [], []
    for _ in range(args.rounds):
        ebp.append(ebp_seconds(specs, X, Y))
        bc.append(torch_seconds(specs, X, y))
    for name, secs in (("EBP, batch 10", ebp), ("BinaryConnect (torch), batch 100", bc)):
        best = min(secs)
        print(f"{name}: {args.images / best:,.0f} images/s (best of {args.rounds} CPU times), "
              f"60,000-image epoch {60000 * best / args.images:.0f} s")  # fmt: skip
    print(f"EBP / BinaryConnect time per image: {min(ebp) / min(bc):.2f}x")


if __name__ == "__main__":
    main()
