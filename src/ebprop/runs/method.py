"""A training method as a sweep runs it: its options class and the function that trains a run.

The sweep knows no method by itself: whoever starts it hands it a table of methods by name
(``ebprop sweep`` hands it :data:`METHODS` here and :data:`ebprop.baselines.METHODS`), so the
sweep needs nothing from the baselines and sits beside them, one floor above the runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .ebp import train_run
from .options import RunOptions, TrainOptions

__all__ = ["METHODS", "TrainingMethod"]


@dataclass(frozen=True)
class TrainingMethod:
    """How one training method is configured and run.

    Attributes
    ----------
    options : type
        Its options class (a :class:`~ebprop.runs.RunOptions` subclass): ``from_dict`` /
        ``to_dict``; its fields are the keys a sweep grid may set. When it has a ``method``
        field (one class for several methods), the method's name is passed in it.
    train : callable
        ``train(options, run_dir, *, resume, progress, stop_event, **kwargs) -> summary``.
    takes_threads : bool
        ``train`` also takes ``threads=`` (a thread count of its own, e.g. torch's).
    """

    options: type[RunOptions]
    train: Callable[..., dict[str, Any]]
    takes_threads: bool = False


#: The methods of this package: EBP (:func:`ebprop.runs.train_run`).
METHODS: dict[str, TrainingMethod] = {"ebp": TrainingMethod(TrainOptions, train_run)}
