"""Early stopping as ``EBPClassifier.fit`` does it.

:func:`validation_split` and :class:`EarlyStopping` implement scikit-learn's ``early_stopping``
contract (as ``MLPClassifier``'s): a held-out fraction, patience, and the best epoch's
parameters restored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["EarlyStopping", "validation_split"]


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
