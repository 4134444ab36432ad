"""What ``EBPClassifier.fit`` adds around the epochs: BLAS threads, early stopping.

:func:`training_threads` limits BLAS to one thread while training; :func:`validation_split`
and :class:`EarlyStopping` implement scikit-learn's ``early_stopping`` contract (as
``MLPClassifier``'s): a held-out fraction, patience, and the best epoch's parameters restored.
"""

from __future__ import annotations

import contextlib
import numbers
import os
from collections.abc import Iterator, Sequence

import numpy as np

from .core import parse_reinforcement

__all__ = [
    "READOUTS",
    "EarlyStopping",
    "check_input_scale",
    "check_parameters",
    "training_threads",
    "validation_split",
]

#: The two readouts: EBP-P and EBP-D.
READOUTS = ("probabilistic", "deterministic")

#: Environment variables that, when set, leave the BLAS thread count to the user.
THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def training_threads() -> Iterator[None]:
    """One BLAS thread while training, unless the user set a thread count in the environment.

    EBP's products are small (a minibatch of 10 rows times one layer), so BLAS threads cost
    more in synchronisation than they gain, and spin against other processes on a shared
    machine: one thread trained 6–270x faster than OpenBLAS's default on the 2-core development
    machine under load (docs/performance.md). Prediction keeps the default.
    """
    if any(os.environ.get(v) for v in THREAD_ENV):
        yield
        return
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def validation_split(
    X: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``X_train, X_val, y_train, y_val``: a stratified ``fraction`` (at least one) held out.

    Stratified when every class can be represented on both sides, else a plain random split.
    """
    from sklearn.model_selection import train_test_split

    n_val = max(1, int(round(fraction * len(y))))
    n_classes = len(np.unique(y))
    stratify = y if n_val >= n_classes and len(y) - n_val >= n_classes else None
    try:
        return train_test_split(X, y, test_size=n_val, random_state=seed, stratify=stratify)
    except ValueError:  # a class with a single sample cannot be stratified
        return train_test_split(X, y, test_size=n_val, random_state=seed)


class EarlyStopping:
    """Track the best validation score (higher is better) and a copy of its parameters.

    Parameters
    ----------
    n_iter_no_change : int
        Epochs without a strictly better score before :meth:`update` says stop.
    """

    def __init__(self, n_iter_no_change: int) -> None:
        self.n_iter_no_change = n_iter_no_change
        self.best_score: float | None = None
        self.best: list[np.ndarray] | None = None
        self.since = 0

    def update(self, score: float, arrays: Sequence[np.ndarray]) -> bool:
        """Record an epoch's score (copying ``arrays`` when it is the best); True: stop now."""
        if self.best_score is None or score > self.best_score:
            self.best_score, self.since = score, 0
            self.best = [a.copy() for a in arrays]
            return False
        self.since += 1
        return self.since >= self.n_iter_no_change

    def restore(self, arrays: Sequence[np.ndarray]) -> None:
        """Write the best epoch's values into ``arrays`` in place (the earliest on ties)."""
        for a, b in zip(arrays, self.best or (), strict=bool(self.best)):
            a[...] = b


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
    if (
        jobs is not None
        and jobs != "auto"
        and (isinstance(jobs, bool) or not isinstance(jobs, numbers.Integral) or jobs < 0)
    ):
        raise ValueError(
            f"n_jobs must be None, 'auto' or an integer >= 0 (0: the NumPy loop), got {jobs!r}"
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
