"""Constraints of the parameter declarations (:mod:`ebprop.params`), in the style of
scikit-learn's ``_parameter_constraints``: each is a callable that returns the parsed value or
raises ``ValueError(describe)``, where ``describe`` completes "<name> must be …".
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["Boolean", "Choice", "Either", "Integer", "Nullable", "Real"]


class Integer:
    """An int (not a bool) in ``[low, high]`` (None: unbounded); returns it as ``int``."""

    def __init__(self, low: int | None = None, high: int | None = None) -> None:
        self.low, self.high = low, high
        if low == 1 and high is None:
            self.describe = "a positive integer (>= 1)"
        elif high is None:
            self.describe = "an integer" + ("" if low is None else f" >= {low}")
        else:
            self.describe = f"an integer in [{low}, {high}]"

    def __call__(self, value: Any) -> int:
        if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
            raise ValueError(self.describe)
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            raise ValueError(self.describe)
        return int(value)


class Real:
    """A finite real number in an interval; ``closed`` in {"both", "left", "right", "neither"}.

    ``what`` replaces the generated description (e.g. "a keep probability in (0, 1]").
    """

    def __init__(
        self,
        low: float | None = None,
        high: float | None = None,
        closed: str = "both",
        what: str | None = None,
    ) -> None:
        self.low, self.high, self.closed = low, high, closed
        lb = "[" if closed in ("both", "left") else "("
        rb = "]" if closed in ("both", "right") else ")"
        if what is not None:
            self.describe = what
        elif low == 0 and high is None and closed in ("neither", "right"):
            self.describe = "a positive finite number"
        else:
            lo = "-inf" if low is None else f"{low:g}"
            hi = "inf" if high is None else f"{high:g}"
            self.describe = f"a finite number in {lb}{lo}, {hi}{rb}"

    def __call__(self, value: Any) -> float:
        if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
            raise ValueError(self.describe)
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(self.describe)
        left_ok = self.low is None or (
            v >= self.low if self.closed in ("both", "left") else v > self.low
        )
        right_ok = self.high is None or (
            v <= self.high if self.closed in ("both", "right") else v < self.high
        )
        if not (left_ok and right_ok):
            raise ValueError(self.describe)
        return v


class Choice:
    """One of the given values (compared with ``==``)."""

    def __init__(self, *choices: Any) -> None:
        self.choices = choices
        names = [repr(c) for c in choices]
        self.describe = " or ".join(names) if len(names) <= 2 else "one of " + ", ".join(names)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str | bool | numbers.Number) and value in self.choices:
            return value
        raise ValueError(self.describe)


class Boolean:
    """True or False (a NumPy bool too); returns a Python bool."""

    describe = "True or False"

    def __call__(self, value: Any) -> bool:
        if not isinstance(value, bool | np.bool_):
            raise ValueError(self.describe)
        return bool(value)


class Nullable:
    """None, or what ``inner`` accepts."""

    def __init__(self, inner: Callable[[Any], Any]) -> None:
        self.inner = inner
        self.describe = f"{getattr(inner, 'describe', 'a valid value')} or None"

    def __call__(self, value: Any) -> Any:
        if value is None:
            return None
        try:
            return self.inner(value)
        except ValueError:
            raise ValueError(self.describe) from None


class Either:
    """What the first of ``kinds`` accepts, else the next, …"""

    def __init__(self, *kinds: Callable[[Any], Any]) -> None:
        self.kinds = kinds
        self.describe = " or ".join(getattr(k, "describe", "a valid value") for k in kinds)

    def __call__(self, value: Any) -> Any:
        for kind in self.kinds:
            try:
                return kind(value)
            except ValueError:
                pass
        raise ValueError(self.describe)
