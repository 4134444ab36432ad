"""Backpropagation baselines in the same harness as EBP (the optional ``ebprop[baselines]`` extra).

- ``bp``: fully connected nets with real weights, ReLU or tanh, softmax cross-entropy, Adam,
  optional dropout and batch normalisation;
- ``binaryconnect``: BinaryConnect (Courbariaux et al. 2015), deterministic sign weights with a
  straight-through gradient to real shadow weights clipped to [-1, 1];
- ``binarynet``: BinaryNet (Hubara et al. 2016), sign weights and sign activations, hard-tanh
  straight-through gradient, optional batch normalisation; its run saves ``model.npz``, the sign
  network folded into an EBP-D model that ``ebprop export`` deploys as bits
  (:mod:`ebprop.baselines.binarynet`).

Each takes ``hidden`` (an MLP) or EBP's ``architecture`` string with conv and max-pool layers
(:mod:`ebprop.baselines.convnet`; a conv BinaryNet folds into an EBP-D CNN,
:mod:`ebprop.baselines.binarynet_conv`). All use the same data, split, preprocessing and
early-stopping rule as EBP runs and write the same run-directory format. torch is imported only
when a baseline is trained or built.

>>> from ebprop.baselines import BaselineOptions, train_baseline
>>> opts = BaselineOptions(method="bp", hidden=(100,))
>>> summary = train_baseline(opts, "runs/bp")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ebprop.baselines.options import ACTIVATIONS, BASELINE_METHODS, BaselineOptions
from ebprop.exceptions import EBPropError
from ebprop.runs.method import TrainingMethod

__all__ = [
    "ACTIVATIONS",
    "BASELINE_METHODS",
    "BaselineOptions",
    "METHODS",
    "MissingDependencyError",
    "require_torch",
    "torch_mlp",
    "train_baseline",
]


class MissingDependencyError(EBPropError, ImportError):
    """An optional dependency (torch for the baselines) is not installed."""


def require_torch() -> Any:
    """Import and return the ``ebprop.baselines.torch_mlp`` module, or say how to get torch.

    Raises
    ------
    MissingDependencyError
        When torch is not installed.
    """
    try:
        importlib.import_module("torch")
    except ImportError as exc:
        raise MissingDependencyError(
            "the bp, binaryconnect and binarynet baselines need PyTorch: "
            "pip install 'ebprop[baselines]' (torch==2.13.0)"
        ) from exc
    return importlib.import_module("ebprop.baselines.torch_mlp")


def train_baseline(options: BaselineOptions, out_dir: str | Path, **kwargs: Any) -> dict:
    """Train a baseline run; see :func:`ebprop.baselines.torch_mlp.train_baseline`."""
    return require_torch().train_baseline(options, out_dir, **kwargs)


#: The baselines as training methods a sweep runs (beside :data:`ebprop.runs.METHODS`).
METHODS: dict[str, TrainingMethod] = {
    name: TrainingMethod(BaselineOptions, train_baseline, takes_threads=True)
    for name in BASELINE_METHODS
}


def __getattr__(name: str) -> Any:
    if name == "torch_mlp":
        return require_torch()
    raise AttributeError(f"module 'ebprop.baselines' has no attribute {name!r}")
