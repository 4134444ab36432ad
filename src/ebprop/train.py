"""Epochs and minibatches over :func:`ebprop.core.step_inplace`. No I/O, no printing.

Long runs are driven from outside (the estimator, the CLI): this module only walks a given
sample order in minibatches, reports progress through a callback, and can start and stop at
any minibatch boundary so that a run can be checkpointed mid-epoch and resumed exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .core import Network, Reinforcement, step_inplace

#: ``on_batch(position, n_errors_so_far)`` is called after each minibatch; return True to stop.
BatchCallback = Callable[[int, int], "bool | None"]


def encode_targets(indices: np.ndarray, n_outputs: int, dtype: np.dtype | type) -> np.ndarray:
    """±1 targets, shape (n, n_outputs), from class indices (n,).

    One output unit (two classes): +1 for class index 1, −1 for index 0. Otherwise one-hot as ±1.
    """
    if n_outputs == 1:
        return (2.0 * indices - 1.0).astype(dtype)[:, None]
    Y = np.full((indices.shape[0], n_outputs), -1.0, dtype=dtype)
    Y[np.arange(indices.shape[0]), indices] = 1.0
    return Y


def decode_outputs(outputs: np.ndarray) -> np.ndarray:
    """Class indices (n,) from output units (n, n_L): argmax, or the sign for one unit."""
    if outputs.shape[1] == 1:
        return (outputs[:, 0] >= 0).astype(np.intp)
    return outputs.argmax(axis=1)


def epoch_order(n_samples: int, rng: np.random.Generator, shuffle: bool = True) -> np.ndarray:
    """The sample order of one epoch: a fresh permutation, or 0..n−1 when not shuffling."""
    return rng.permutation(n_samples) if shuffle else np.arange(n_samples)


def run_minibatches_inplace(
    net: Network,
    X: np.ndarray,
    Y: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    nu: float = 0.0,
    start: int = 0,
    on_batch: BatchCallback | None = None,
    reinforcement: Reinforcement | None = None,
    epoch: int = 0,
) -> tuple[int, int]:
    """Train ``net`` on ``X[order[start:]]`` in minibatches, in place.

    Parameters
    ----------
    X : (n, n_0) inputs in ``net.dtype``; Y : (n, n_L) ±1 targets.
    order : (n,) sample indices for this epoch; start : position in ``order`` to resume from.
    on_batch : called after every minibatch with (position, errors so far); return True to stop.
    reinforcement : schedule of the factors ρ_l (None: plain EBP); ``epoch`` (finished epochs
        before this one) and the position in ``order`` give its progress.

    Returns
    -------
    (position, n_errors) : where training stopped (``len(order)`` when the epoch is complete) and
    the online EBP-P training errors (prediction before each update) since ``start``.
    """
    labels = decode_outputs(Y)
    n_errors = 0
    position = start
    n = order.shape[0]
    while position < n:
        idx = order[position : position + batch_size]
        rho = None
        if reinforcement is not None:
            rho = reinforcement.factors(len(net.H), epoch + position / n)
        out = step_inplace(net, X[idx], Y[idx], nu, rho)
        n_errors += int(np.count_nonzero(decode_outputs(out) != labels[idx]))
        position += idx.shape[0]
        if on_batch is not None and on_batch(position, n_errors):
            break
    return position, n_errors
