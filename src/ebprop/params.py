"""The estimator's parameters: their validation, in one place.

:func:`check_parameters` is :meth:`ebprop.EBPClassifier.check_params`; :func:`check_input_scale`
refuses inputs whose squares would overflow the forward pass.
"""

from __future__ import annotations

import numbers

import numpy as np

from .core import parse_reinforcement

__all__ = ["READOUTS", "check_input_scale", "check_parameters"]

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
