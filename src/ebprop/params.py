"""The estimator's parameters: their validation, in one place.

:func:`check_parameters` is :meth:`ebprop.EBPClassifier.check_params`; :func:`conv_specs`
checks ``architecture`` and ``input_shape``; :func:`check_input_scale` refuses inputs whose
squares would overflow the forward pass; :func:`check_memory` refuses, before anything is
allocated, a network whose estimated bytes (:func:`network_bytes`) exceed ``max_memory``.
"""

from __future__ import annotations

import numbers

import numpy as np

from .core import parse_reinforcement
from .core.architecture import LayerSpec, dense_sizes, parse_architecture

__all__ = [
    "DEFAULT_HIDDEN",
    "READOUTS",
    "check_estimator_memory",
    "check_input_scale",
    "check_memory",
    "check_parameters",
    "conv_specs",
    "memory_budget",
    "network_bytes",
    "parse_memory",
    "total_memory",
]

#: The two readouts: EBP-P and EBP-D.
READOUTS = ("probabilistic", "deterministic")


def check_parameters(est) -> tuple[tuple[int, ...], object]:  # noqa: C901 - a flat list
    """Validate an :class:`~ebprop.EBPClassifier`'s constructor parameters (its ``check_params``).

    Returns
    -------
    (hidden_layer_sizes, reinforcement) : the widths as a tuple of int and the parsed
    reinforcement schedule (None for plain EBP).
    """
    sizes = est.hidden_layer_sizes
    if isinstance(sizes, numbers.Integral):
        sizes = (sizes,)
    sizes = tuple(sizes)
    if not all(isinstance(s, numbers.Integral) and s > 0 for s in sizes):
        raise ValueError(f"hidden_layer_sizes must be positive integers, got {sizes!r}")
    specs = conv_specs(est)
    if specs is not None and dense_sizes(specs) is not None:
        sizes = dense_sizes(specs)  # an all-dense architecture is an MLP
    if est.weights not in ("binary", "real"):
        raise ValueError(f"weights must be 'binary' or 'real', got {est.weights!r}")
    for name in ("early_stopping", "warm_start"):
        if not isinstance(getattr(est, name), bool | np.bool_):
            raise ValueError(f"{name} must be True or False, got {getattr(est, name)!r}")
    f = est.validation_fraction
    if isinstance(f, bool) or not isinstance(f, numbers.Real) or not 0.0 < f < 1.0:
        raise ValueError(f"validation_fraction must be a fraction in (0, 1), got {f!r}")
    for name in ("batch_size", "max_iter", "n_iter_no_change"):
        value = getattr(est, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if est.readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {est.readout!r}")
    p = est.input_dropout
    if p is not None and not (isinstance(p, numbers.Real) and 0.0 < p <= 1.0):
        raise ValueError(f"input_dropout must be a keep probability in (0, 1] or None, got {p!r}")
    for name in ("init_variance", "prior_variance"):
        value = getattr(est, name)
        if not (isinstance(value, numbers.Real) and np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    schedule = parse_reinforcement(est.reinforcement)
    if schedule is not None and est.weights != "binary":
        raise ValueError(
            "reinforcement applies to binary weights only (it polarises P(W = ±1)); "
            f"got weights={est.weights!r}"
        )
    jobs = est.n_jobs
    if jobs is not None and (
        isinstance(jobs, bool) or not isinstance(jobs, numbers.Integral) or jobs < 0
    ):
        raise ValueError(
            f"n_jobs must be None or an integer >= 0 (0: the NumPy loop), got {jobs!r}"
        )
    est.float_dtype()
    parse_memory(getattr(est, "max_memory", None))
    return sizes, schedule


def check_input_scale(X: np.ndarray, dtype: np.dtype) -> None:
    """ValueError when ``X`` is so large that EBP's forward pass in ``dtype`` would overflow.

    The first layer sums x² over the features; beyond √(max / (4 n_features)) that sum (or
    Σx² − x²·M²) overflows to inf and the update turns the parameters into NaN.
    """
    bound = float(np.sqrt(np.finfo(dtype).max / (4.0 * max(1, X.shape[1]))))
    largest = float(np.abs(X).max()) if X.size else 0.0
    if largest > bound:
        raise ValueError(
            f"X has values up to {largest:.3g}; EBP's forward pass in {np.dtype(dtype)} needs "
            f"|x| <= {bound:.3g} for {X.shape[1]} features: scale the features first "
            "(e.g. ebprop.datasets.Preprocessor or sklearn's StandardScaler)"
        )


#: ``hidden_layer_sizes``'s default: with ``architecture`` given it must stay at this value.
DEFAULT_HIDDEN = (200,)


def conv_specs(est) -> tuple[LayerSpec, ...] | None:
    """The hidden layers of ``est.architecture`` (None when not given); checks ``input_shape``.

    ValueError (one line, naming the parameter) for a malformed string, for ``architecture``
    given together with a non-default ``hidden_layer_sizes``, or a malformed ``input_shape``.
    """
    shape = getattr(est, "input_shape", None)
    if shape is not None and (
        isinstance(shape, str | bytes)
        or len(tuple(shape)) != 3
        or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in shape
        )  # fmt: skip
    ):
        raise ValueError(f"input_shape must be (height, width, channels) >= 1, got {shape!r}")
    text = getattr(est, "architecture", None)
    if text is None:
        return None
    try:
        specs = parse_architecture(text)
    except ValueError as exc:
        raise ValueError(f"architecture: {exc}") from None
    hidden = est.hidden_layer_sizes
    hidden = (hidden,) if isinstance(hidden, numbers.Integral) else tuple(hidden)
    if hidden != DEFAULT_HIDDEN:
        raise ValueError(
            "give hidden_layer_sizes or architecture, not both "
            f"(architecture={text!r}, hidden_layer_sizes={hidden!r})"
        )
    return specs


# ---------------------------------------------------------------------------- memory budget
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
