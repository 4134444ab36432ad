"""Settings of a baseline run (backpropagation or BinaryConnect). No torch needed here.

Dropout is given as a *keep* probability everywhere, as for EBP's ``input_dropout`` (the
authors' 0.8 keeps 80 % of the inputs); torch's ``Dropout(p)`` gets ``p = 1 - keep``.
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["ACTIVATIONS", "BASELINE_METHODS", "BaselineOptions"]

#: Baseline methods and one line each.
BASELINE_METHODS: dict[str, str] = {
    "bp": "backpropagation, real weights, softmax cross-entropy, Adam",
    "binaryconnect": "BinaryConnect: sign(w) weights, straight-through gradient, clipped shadow w",
}
ACTIVATIONS = ("relu", "tanh")
_DTYPES = ("float32", "float64")


def _keep_probability(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be a keep probability in (0, 1] or None, got {value!r}")
    return None if value == 1.0 else float(value)


def _positive_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


@dataclass
class BaselineOptions:
    """Everything that defines a baseline run; saved as ``options.json`` in the run directory.

    Parameters
    ----------
    method : {"bp", "binaryconnect"}
        Plain backpropagation with real weights, or BinaryConnect (deterministic sign weights).
    dataset, data_dir, validation, seed
        As for EBP runs: :func:`ebprop.datasets.load_dataset` arguments; ``seed`` also seeds the
        initial weights, the shuffling and the dropout masks.
    hidden : tuple of int
        Hidden layer widths, e.g. ``(800, 800)``.
    activation : {"relu", "tanh"}
        Hidden activation.
    epochs, batch_size, patience
        At most ``epochs`` epochs of minibatches of ``batch_size``; stop after ``patience``
        epochs without a better validation error (None: never stop early).
    learning_rate, lr_decay
        Adam's step size, multiplied by ``lr_decay`` after every epoch.
    input_dropout, hidden_dropout : float or None
        Keep probabilities of dropout on the inputs and after each hidden activation.
    batch_norm : bool or None
        Batch normalisation after each hidden linear layer (and, for BinaryConnect, after the
        output layer too, as in Courbariaux et al. 2015). None: the method's default (False for
        bp, True for binaryconnect).
    filters, scaling, deskew
        :class:`ebprop.datasets.Preprocessor` settings, fitted on the training images.
    dtype : {"float32", "float64"}
        Tensor precision.
    extra : dict
        Free-form JSON labels (a sweep stores the run's group and name here).
    """

    method: str = "bp"
    dataset: str = "digits"
    data_dir: str | None = None
    hidden: tuple[int, ...] = (100,)
    activation: str = "relu"
    epochs: int = 10
    batch_size: int = 100
    learning_rate: float = 1e-3
    lr_decay: float = 1.0
    input_dropout: float | None = None
    hidden_dropout: float | None = None
    batch_norm: bool | None = None
    filters: str | None = None
    scaling: str = "unit"
    deskew: bool = False
    seed: int = 0
    dtype: str = "float32"
    validation: int | float | None = None
    patience: int | None = None
    extra: dict = field(default_factory=dict)  # free-form labels (a sweep's grid point, ...)

    def __post_init__(self) -> None:  # noqa: C901 - a flat list of checks reads best
        if self.method not in BASELINE_METHODS:
            raise ValueError(
                f"unknown baseline method {self.method!r}; "
                f"choose from {', '.join(BASELINE_METHODS)}"
            )
        if isinstance(self.hidden, numbers.Integral) and not isinstance(self.hidden, bool):
            self.hidden = (int(self.hidden),)
        try:
            self.hidden = tuple(_positive_int("each hidden width", h) for h in self.hidden)
        except TypeError:
            raise ValueError(f"hidden must be a sequence of widths, got {self.hidden!r}") from None
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; choose from {', '.join(ACTIVATIONS)}"
            )
        self.epochs = _positive_int("epochs", self.epochs)
        self.batch_size = _positive_int("batch_size", self.batch_size)
        self.patience = _positive_int("patience", self.patience, allow_none=True)
        for name in ("learning_rate", "lr_decay"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0:
                raise ValueError(f"{name} must be a number > 0, got {v!r}")
            setattr(self, name, float(v))
        self.input_dropout = _keep_probability("input_dropout", self.input_dropout)
        self.hidden_dropout = _keep_probability("hidden_dropout", self.hidden_dropout)
        if self.batch_norm is None:
            self.batch_norm = self.method == "binaryconnect"
        if not isinstance(self.batch_norm, bool):
            raise ValueError(f"batch_norm must be true, false or None, got {self.batch_norm!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {self.dtype!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed!r}")
        if self.filters is not None and not isinstance(self.filters, str):
            raise ValueError(
                f"filters must be a string such as 'default' or None, got {self.filters!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (tuples become lists)."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BaselineOptions:
        """Inverse of :meth:`to_dict`; an unknown key is an error that names it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown baseline option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        d = dict(d)
        if "hidden" in d and isinstance(d["hidden"], list):
            d["hidden"] = tuple(d["hidden"])
        return cls(**d)
