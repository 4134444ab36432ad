"""The value parsers of the parameter declarations in :mod:`ebprop.params` that are not one of
:mod:`ebprop.constraints`' classes, and the stored (JSON) forms of parsed values.

Each parser returns the parsed value or raises ``ValueError(describe)``, where ``describe``
completes "<name> must be …", or :class:`Reason` with a whole sentence.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .core import Reinforcement, parse_reinforcement

__all__ = [
    "Reason", "anything", "float_dtype", "identity", "list_json", "random_state_json",
    "schedule", "shape3", "text", "widths",
]  # fmt: skip


def widths(value: Any) -> tuple[int, ...]:
    """Hidden layer widths: an int or an iterable of ints >= 1, as a tuple of int."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise ValueError(widths.describe)
    out = tuple(value)
    if not all(
        isinstance(w, numbers.Integral) and not isinstance(w, bool | np.bool_) and w >= 1
        for w in out
    ):
        raise ValueError(widths.describe)
    return tuple(int(w) for w in out)


widths.describe = "hidden layer widths, each a positive integer (>= 1)"  # type: ignore[attr-defined]


class Reason(ValueError):
    """Raised by a check whose message is the whole reason (the bad value and the fix in it):
    :meth:`ebprop.params.Param.validate` puts only the parameter's name before it, no
    ``must be …, got …``."""


def schedule(value: Any) -> Reinforcement | None:
    """A reinforcement schedule (:func:`ebprop.core.parse_reinforcement`), or None."""
    try:
        return parse_reinforcement(value)
    except ValueError as exc:  # the parser's own sentence names the value and what is wrong
        raise Reason(str(exc).removeprefix("reinforcement ")) from None


schedule.describe = "a number, 'auto' or 'key=value,…'"  # type: ignore[attr-defined]


def float_dtype(value: Any) -> str:
    """``'float32'`` or ``'float64'`` (a string as given, else the dtype's name)."""
    try:
        dt = np.dtype(value)
    except TypeError:  # not a dtype at all ('x'); note None == np.dtype(float64) is true
        raise ValueError(float_dtype.describe) from None
    if value is None or dt.name not in ("float32", "float64"):
        raise ValueError(float_dtype.describe)
    return value if isinstance(value, str) else dt.name


float_dtype.describe = "'float32' or 'float64'"  # type: ignore[attr-defined]


def shape3(value: Any) -> tuple[int, int, int]:
    """(height, width, channels), each a positive int."""
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise ValueError(shape3.describe)
    shape = tuple(value)
    if len(shape) != 3 or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in shape
    ):
        raise ValueError(shape3.describe)
    return tuple(int(d) for d in shape)  # type: ignore[return-value]


shape3.describe = "(height, width, channels) >= 1"  # type: ignore[attr-defined]


def text(value: Any) -> str:
    """Any string, unchanged."""
    if not isinstance(value, str):
        raise ValueError("a string")
    return value


def anything(value: Any) -> Any:
    """Any value, unchanged (a parameter the estimator checks where it uses it)."""
    return value


# ---------------------------------------------------------------------------- JSON forms
def random_state_json(value: Any) -> int | None:
    """The stored form of ``random_state``: an int, else None."""
    # a Generator/RandomState cannot be stored as JSON
    return int(value) if isinstance(value, numbers.Integral) else None


def list_json(value: Any) -> list | None:
    """The stored form of a tuple of ints: a list, or None."""
    return None if value is None else [int(v) for v in np.atleast_1d(value)]


def identity(value: Any) -> Any:
    """The stored form of a value JSON holds as it is: the value."""
    return value
