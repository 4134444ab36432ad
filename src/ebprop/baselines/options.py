"""Settings of a baseline run (backpropagation, BinaryConnect, BinaryNet). No torch needed here.

The data, architecture and schedule fields are those of every run
(:class:`ebprop.runs.RunOptions`, validated there); this class adds the baselines' own.
Dropout is given as a *keep* probability everywhere, as for EBP's ``input_dropout`` (the
authors' 0.8 keeps 80 % of the inputs); torch's ``Dropout(p)`` gets ``p = 1 - keep``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from ebprop.params import check_option
from ebprop.runs.options import RunOptions, check_architecture, declared_field, option_field

__all__ = ["ACTIVATIONS", "BASELINE_METHODS", "BaselineOptions"]

#: Baseline methods and one line each.
BASELINE_METHODS: dict[str, str] = {
    "bp": "backpropagation, real weights, softmax cross-entropy, Adam",
    "binaryconnect": "BinaryConnect: sign(w) weights, straight-through gradient, clipped shadow w",
    "binarynet": "BinaryNet: sign weights and sign activations, hard-tanh straight-through",
}
ACTIVATIONS = ("relu", "tanh")


def _keep_probability(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be a keep probability in (0, 1] or None, got {value!r}")
    return None if value == 1.0 else float(value)


@dataclass
class BaselineOptions(RunOptions):
    """Everything that defines a baseline run; saved as ``options.json`` in the run directory.

    Parameters
    ----------
    method : {"bp", "binaryconnect", "binarynet"}
        Plain backpropagation with real weights, BinaryConnect (deterministic sign weights), or
        BinaryNet (sign weights and sign activations; deployed as its folded sign network).
    dataset, data_dir, validation, filters, scaling, deskew, seed, dtype
        As for EBP runs (:class:`ebprop.runs.DataOptions`); ``seed`` also seeds the initial
        weights, the shuffling and the dropout masks.
    hidden, epochs, batch_size, patience, input_dropout, extra
        As for EBP runs (:class:`ebprop.runs.RunOptions`); a keep probability of 1 is None.
    architecture : str or None
        The hidden layers in EBP's notation instead of ``hidden`` (not with it), e.g.
        ``"16C5-MP2-32C5-MP2-128"``: conv, max-pool and dense layers
        (:mod:`ebprop.baselines.convnet`); the input shape comes from the dataset's images, as
        for EBP runs. Dense layers only (``"500-500"``) is the MLP of ``hidden``.
    activation : {"relu", "tanh"}
        Hidden activation (BinaryNet: always sign; this is ignored).
    learning_rate, lr_decay
        Adam's step size, multiplied by ``lr_decay`` after every epoch.
    hidden_dropout : float or None
        Keep probability of dropout after each hidden activation.
    batch_norm : bool or None
        Batch normalisation after each hidden linear layer (and, for BinaryConnect, after the
        output layer too, as in Courbariaux et al. 2015). None: the method's default (False for
        bp, True for binaryconnect and binarynet).
    fit_intercept : bool
        Biases in every linear layer (False: none; batch normalisation still shifts).
    """

    _what = "baseline option(s)"

    method: str = option_field(
        "bp", "Baseline method: " + "; ".join(f"{k}: {v}" for k, v in BASELINE_METHODS.items())
    )
    architecture: str | None = declared_field("architecture")
    batch_size: int = option_field(100, "Minibatch size.")
    activation: str = option_field(
        "relu", "bp, binaryconnect: hidden activation (binarynet: sign).", choices=ACTIVATIONS
    )
    learning_rate: float = option_field(1e-3, "Adam's step size.")
    lr_decay: float = option_field(1.0, "Learning rate multiplied by this after every epoch.")
    hidden_dropout: float | None = option_field(
        None, "Keep probability of dropout after each hidden activation."
    )
    batch_norm: bool | None = option_field(
        None,
        "Batch normalisation of every hidden layer (per channel for conv layers). "
        "[default: on for binaryconnect and binarynet, off for bp]",
    )
    fit_intercept: bool = option_field(True, "Biases in every layer.")

    def validate(self) -> None:
        if self.method not in BASELINE_METHODS:
            raise ValueError(
                f"unknown baseline method {self.method!r}; "
                f"choose from {', '.join(BASELINE_METHODS)}"
            )
        super().validate()
        check_architecture(self)
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; choose from {', '.join(ACTIVATIONS)}"
            )
        for name in ("learning_rate", "lr_decay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
                raise ValueError(f"{name} must be a number > 0, got {v!r}")
            setattr(self, name, float(v))
        self.input_dropout = _keep_probability("input_dropout", self.input_dropout)
        self.hidden_dropout = _keep_probability("hidden_dropout", self.hidden_dropout)
        if self.batch_norm is None:
            self.batch_norm = self.method in ("binaryconnect", "binarynet")
        self.fit_intercept = check_option("fit_intercept", self.fit_intercept)
        if not isinstance(self.batch_norm, bool):
            raise ValueError(f"batch_norm must be true, false or None, got {self.batch_norm!r}")
