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

from .core.architecture import ConvSpec, DenseSpec, layer_shapes, parse_architecture

__all__ = [
    "DEFAULT_MEMORY_SHARE",
    "check_estimator_memory",
    "check_memory",
    "conv_bytes",
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
#: Arrays of each conv layer's unfolded patches (im2col) per minibatch sample.
_PER_COL = 3
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


def conv_bytes(
    specs, input_shape, n_out: int, batch_size: int, itemsize: int, n_samples: int = 0
) -> int:
    """Estimated bytes a convolutional EBP network trains in: :func:`network_bytes`'s terms for
    the layers of ``specs`` (:mod:`ebprop.core.architecture`) on inputs of ``input_shape``
    (H, W, C) with ``n_out`` outputs, plus the unfolded patches (im2col) of each conv layer."""
    shapes = layer_shapes(specs, tuple(input_shape))
    prev = tuple(int(d) for d in input_shape)
    n_in = prev[0] * prev[1] * prev[2]
    weights, units, cols = 0, n_in, 0
    for spec, shape in zip(specs, shapes, strict=True):
        if isinstance(spec, ConvSpec):
            fan_in = spec.kernel**2 * prev[2]
            weights += (fan_in + 1) * spec.channels
            cols += shape[0] * shape[1] * fan_in
        elif isinstance(spec, DenseSpec):
            weights += (prev[0] * prev[1] * prev[2] + 1) * spec.units
        units += shape[0] * shape[1] * shape[2]
        prev = shape
    weights += (prev[0] * prev[1] * prev[2] + 1) * int(n_out)
    units += int(n_out)
    per_sample = _PER_UNIT * units + _PER_COL * cols
    return itemsize * (_PER_WEIGHT * weights + int(batch_size) * per_sample + n_samples * n_in)


def check_estimator_memory(est, sizes: list[int]) -> None:
    """:func:`check_memory` for an estimator about to build its network: dense (``sizes`` =
    n_0..n_L), or convolutional (``architecture`` on ``input_shape``, or on square grey images
    of n_0 pixels; a shape that does not fit is left to the network's own checks)."""
    batch, itemsize = int(est.batch_size), np.dtype(est.dtype).itemsize
    text = getattr(est, "architecture", None)
    if text is None:
        what = f"a {'-'.join(map(str, sizes))} network with batch_size {batch}"
        need = network_bytes(sizes, batch, itemsize)
    else:
        shape = getattr(est, "input_shape", None)
        side = int(round(sizes[0] ** 0.5))
        if shape is None and side * side == sizes[0]:
            shape = (side, side, 1)
        if shape is None:
            return
        try:
            need = conv_bytes(parse_architecture(text), shape, sizes[-1], batch, itemsize)
        except ValueError:
            return
        what = f"architecture {text} on {shape[0]}x{shape[1]}x{shape[2]} with batch_size {batch}"
    check_memory(need, getattr(est, "max_memory", None), what)
