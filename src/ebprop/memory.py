"""The memory budget: estimated bytes of a network, checked against ``max_memory``.

:func:`network_bytes` estimates what a dense EBP network trains in; :func:`check_memory` refuses,
before anything is allocated, a size past the budget (``max_memory``, by default 80 % of the
machine's total memory) with the estimated bytes in a one-line message. The estimator
(:func:`check_estimator_memory`), the run options (before the data is loaded) and the sweep's
``--dry-run`` call it. NumPy only.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "DEFAULT_MEMORY_SHARE",
    "check_estimator_memory",
    "check_memory",
    "memory_budget",
    "network_bytes",
    "parse_memory",
    "total_memory",
]

#: Share of the machine's total memory a training may plan to use when ``max_memory`` is None.
DEFAULT_MEMORY_SHARE = 0.8
#: Arrays of each weight's size a training holds (H, the weight means and variances, the
#: update and its scratch), and of each unit's size per minibatch sample (moments, Δ, caches).
_PER_WEIGHT, _PER_UNIT = 6, 12
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def total_memory() -> int:
    """The machine's total physical memory in bytes (not what is free: the same command passes
    or fails the same way whatever else is running); 0 when unknown."""
    import os

    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return 0


def parse_memory(value) -> int | None:
    """``max_memory`` as bytes: None (the default budget), an integer number of bytes, or text
    such as ``"8G"``, ``"512M"``, ``"12.5GiB"``; ValueError naming the option otherwise."""
    if value is None or (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
        if value is not None and value < 1:
            raise ValueError(f"max_memory must be a positive number of bytes, got {value!r}")
        return None if value is None else int(value)
    text = str(value).strip().upper().removesuffix("IB").removesuffix("B")
    unit = text[-1:] if text[-1:] in _UNITS else ""
    try:
        amount = float(text[: len(text) - len(unit)])
    except ValueError:
        amount = -1.0
    if not np.isfinite(amount) or amount <= 0:
        raise ValueError(
            f"max_memory must be a size such as 8G, 512M or a number of bytes, got {value!r}"
        )
    return int(amount * _UNITS[unit])


def memory_budget(max_memory) -> int:
    """The byte budget ``max_memory`` gives (default: 80 % of the machine's total memory)."""
    budget = parse_memory(max_memory)
    if budget is None:
        total = total_memory()
        budget = int(DEFAULT_MEMORY_SHARE * total) if total else 2**62
    return budget


def network_bytes(sizes, batch_size: int, itemsize: int, n_samples: int = 0) -> int:
    """Estimated bytes a dense EBP network of ``sizes`` (n_0..n_L) trains in: its weights'
    arrays, one minibatch's activations, and ``n_samples`` rows of features (Python ints: no
    overflow, however large the numbers)."""
    sizes = [int(s) for s in sizes]
    weights = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    units = sum(sizes)
    return itemsize * (
        _PER_WEIGHT * weights + _PER_UNIT * int(batch_size) * units + int(n_samples) * sizes[0]
    )


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB ({n:,} bytes)"


def check_memory(need: int, max_memory, what: str) -> None:
    """ValueError (one line, with the estimated bytes) when ``need`` exceeds the budget."""
    budget = memory_budget(max_memory)
    if need > budget:
        source = "max_memory" if max_memory is not None else "max_memory (default: 80 % of RAM)"
        raise ValueError(
            f"{what} needs about {_gib(need)}, over {source} of {_gib(budget)}; use smaller "
            "hidden layers, batch size or images, or raise --max-memory"
        )


def check_estimator_memory(est, sizes: list[int]) -> None:
    """:func:`check_memory` for an estimator's dense network of ``sizes`` (n_0..n_L); conv
    networks (``architecture``) are not estimated."""
    if getattr(est, "architecture", None) is None:
        what = f"a {'-'.join(map(str, sizes))} network with batch_size {est.batch_size}"
        need = network_bytes(sizes, est.batch_size, np.dtype(est.dtype).itemsize)
        check_memory(need, getattr(est, "max_memory", None), what)
