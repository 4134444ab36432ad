"""The options vocabulary: one name per setting, from the command line to the core.

:class:`DataOptions` (which data, which split, which preprocessing) and :class:`RunOptions`
(architecture, schedule, early stopping) are shared by every training method;
:class:`TrainOptions` adds EBP's settings and :class:`ebprop.baselines.BaselineOptions` the
baselines'. Each field is validated once, here, when the options are made; the command line and
the sweep derive their key lists from these classes (:func:`option_keys`). The only translation
left is :meth:`TrainOptions.estimator_params`, to scikit-learn's parameter names.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..datasets.augment import check_max_shift
from ..estimator import EBPClassifier

__all__ = [
    "DataOptions",
    "RunOptions",
    "TrainOptions",
    "nullable_keys",
    "option_keys",
]

_DTYPES = ("float32", "float64")
SELECT_BY = ("probabilistic", "deterministic")


def positive_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """``value`` as an int >= 1 (None passes when ``allow_none``); ValueError names ``name``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer (>= 1), got {value!r}")
    return int(value)


def _hidden(value: Any) -> tuple[int, ...]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    try:
        return tuple(positive_int("each hidden layer width", h) for h in value)
    except TypeError:
        raise ValueError(f"hidden must be a sequence of widths, got {value!r}") from None


class _Options:
    """to_dict/from_dict shared by the option classes (flat JSON, ``hidden`` as a list)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (``hidden`` and ``image_size`` as lists)."""
        d = dataclasses.asdict(self)
        for key in ("hidden", "image_size"):
            if d.get(key) is not None:
                d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """Inverse of :meth:`to_dict`; unknown keys are refused (ValueError naming them)."""
        known = option_keys(cls) | {"extra"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown {cls._what} {unknown}; known: {sorted(known)}")
        return cls(**d)


@dataclass
class DataOptions(_Options):
    """Which data a run trains on and how it is turned into features.

    Parameters
    ----------
    dataset : one of :data:`ebprop.datasets.DATASETS`, or a path to your own data (a folder of
        images or an ``.npz``; stored as an absolute path).
    data_dir : folder holding the dataset (None: ``$EBPROP_DATA`` or the cache).
    validation : images held out of the training set: a count, a fraction, 0, or None (the
        dataset's default).
    test_fraction, test_seed : for your own data without a test set: the stratified fraction
        held out as the test set and the fixed seed of that draw.
    image_size : (height, width) every image of your own folder must have, or is resized to
        (``resize="resize"``); None: the size of the first image.
    resize : {"refuse", "resize"}; what to do with an image of another size.
    filters, scaling, deskew : :class:`ebprop.datasets.Preprocessor` settings.
    seed : int >= 0; seeds the validation split and everything random in training.
    dtype : {"float32", "float64"}.
    """

    _what = "data options"

    dataset: str = "digits"
    data_dir: str | None = None
    validation: int | float | None = None
    test_fraction: float = 0.2
    test_seed: int = 0
    image_size: tuple[int, int] | None = None
    resize: str = "refuse"
    filters: str | None = None
    scaling: str = "unit"
    deskew: bool = False
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field (ValueError naming the field); subclasses extend it."""
        from ..datasets import (
            DATASETS,
            SCALINGS,
            check_load_options,
            is_dataset_path,
            parse_filters,
        )

        if not isinstance(self.dataset, str | os.PathLike):
            raise ValueError(f"dataset must be a name or a path, got {self.dataset!r}")
        if is_dataset_path(self.dataset):
            # absolute, so the model finds its data from any working folder
            self.dataset = str(Path(self.dataset).expanduser().resolve())
        elif self.dataset not in DATASETS:
            raise ValueError(
                f"unknown dataset {self.dataset!r}; choose from {', '.join(DATASETS)} or give "
                "a path (a folder of images, an .npz)"
            )
        if self.data_dir is not None:
            self.data_dir = str(self.data_dir)
        v = self.validation
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real) or v < 0):
            raise ValueError(f"validation must be a count, a fraction or None, got {v!r}")
        if isinstance(self.image_size, list):  # from JSON
            self.image_size = tuple(self.image_size)
        if isinstance(self.test_seed, bool) or not isinstance(self.test_seed, numbers.Integral):
            raise ValueError(f"test_seed must be an integer, got {self.test_seed!r}")
        check_load_options(v, self.test_fraction, self.image_size, self.resize)
        if self.filters is not None:
            if not isinstance(self.filters, str):
                raise ValueError(
                    f"filters must be a string such as 'default' or None, got {self.filters!r}"
                )
            try:
                names = parse_filters(self.filters)
            except ValueError as exc:
                raise ValueError(f"filters: {exc}") from None
            if not names:
                self.filters = None
        if self.scaling not in SCALINGS:
            raise ValueError(f"unknown scaling {self.scaling!r}; choose from {', '.join(SCALINGS)}")
        if not isinstance(self.deskew, bool):
            raise ValueError(f"deskew must be true or false, got {self.deskew!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed!r}")
        self.seed = int(self.seed)
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(_DTYPES)}, got {self.dtype!r}")


@dataclass
class RunOptions(DataOptions):
    """Settings every training method shares: architecture, schedule, early stopping.

    ``epochs`` may be raised when resuming; every other field must match the run's.
    ``patience``: stop after this many epochs without a better validation error.
    ``input_dropout``: keep probability of the inputs (None: no dropout).
    ``extra``: free-form JSON labels (a sweep stores the run's group and name here).
    """

    _what = "run options"

    hidden: tuple[int, ...] = (100,)
    epochs: int = 10
    batch_size: int = 10
    input_dropout: float | None = None
    patience: int | None = None
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        super().validate()
        self.hidden = _hidden(self.hidden)
        self.epochs = positive_int("epochs", self.epochs)
        self.batch_size = positive_int("batch_size", self.batch_size)
        self.patience = positive_int("patience", self.patience, allow_none=True)
        p = self.input_dropout
        if p is not None and (
            isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 < p <= 1.0
        ):
            raise ValueError(f"input_dropout must be a keep probability in (0, 1], got {p!r}")


#: Training images (the first ones) on which ``refit_thresholds`` fits the EBP-D thresholds:
#: enough for 500-unit layers, and it bounds the refit's memory (a sort per layer).
REFIT_SAMPLES = 20000


@dataclass
class TrainOptions(RunOptions):
    """Everything that defines an EBP training run (saved as the run's ``options.json``).

    The EBP fields are :class:`ebprop.EBPClassifier`'s (validated by its
    :meth:`~ebprop.EBPClassifier.check_params`): ``weights``, ``init_variance``,
    ``prior_variance``, ``reinforcement``. ``select_by`` is the readout whose validation error
    picks the best epoch (``model.npz``). ``augment_shift``: each epoch trains on the training
    images shifted anew by up to this many pixels (:mod:`ebprop.datasets.augment`; 0 = off).
    """

    _what = "training options"

    weights: str = "binary"
    init_variance: float = 1.0
    prior_variance: float = 1.0
    reinforcement: float | str | None = None
    select_by: str = "probabilistic"
    refit_thresholds: bool = False
    augment_shift: int = 0
    jobs: int | str | None = None

    def validate(self) -> None:
        super().validate()
        if self.select_by not in SELECT_BY:
            raise ValueError(f"select_by must be one of {SELECT_BY}, got {self.select_by!r}")
        if not isinstance(self.refit_thresholds, bool):
            raise ValueError(
                f"refit_thresholds must be true or false, got {self.refit_thresholds!r}"
            )
        if self.refit_thresholds and self.weights != "binary":
            raise ValueError("refit_thresholds applies to binary weights only")
        self.augment_shift = check_max_shift(self.augment_shift)
        EBPClassifier(**self.estimator_params()).check_params()

    def estimator_params(self) -> dict:
        """Constructor parameters of the :class:`EBPClassifier` this run trains."""
        return {
            "hidden_layer_sizes": list(self.hidden),
            "weights": self.weights,
            "batch_size": self.batch_size,
            "max_iter": self.epochs,
            "input_dropout": self.input_dropout,
            "init_variance": self.init_variance,
            "prior_variance": self.prior_variance,
            "reinforcement": self.reinforcement,
            "random_state": self.seed,
            "dtype": self.dtype,
            "n_jobs": self.jobs,
        }


def option_keys(cls: type) -> frozenset[str]:
    """The setting names of an option class (``extra`` excluded)."""
    return frozenset(f.name for f in dataclasses.fields(cls) if f.name != "extra")


def nullable_keys(cls: type) -> frozenset[str]:
    """The settings of an option class that may be None."""
    return frozenset(
        f.name for f in dataclasses.fields(cls) if f.name != "extra" and "None" in str(f.type)
    )
