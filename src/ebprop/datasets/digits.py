"""scikit-learn's bundled 8x8 digits: the dataset that needs no download."""

from __future__ import annotations

import numpy as np

from ebprop.datasets.base import Dataset, resolve_validation, split_stratified

__all__ = ["DIGITS_TEST_SEED", "load_digits"]

#: Seed of the fixed train/test split, so that every run reports on the same test set.
DIGITS_TEST_SEED = 0
_DEFAULT_VALIDATION = 0.2


def load_digits(*, validation: int | float | None = None, seed: int = 0) -> Dataset:
    """Load the 1,797 8x8 digits bundled with scikit-learn.

    The test set is a fixed stratified third (``train_test_split(..., test_size=1/3,
    stratify=y, random_state=0)``); the validation split is a stratified part of the remaining
    two thirds drawn with ``seed``.

    Parameters
    ----------
    validation : int, float or None
        Number (int) or fraction (float) of the training part held out; default 0.2; 0 for none.
    seed : int
        Seed of the validation split (the test split does not depend on it).

    Returns
    -------
    Dataset
        uint8 images (n, 8, 8) with values 0..16 (max_value 16); 958/240/599 by default.
    """
    # imported here: scikit-learn takes ~1 s to import and only digits needs it
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    images = bunch.images.astype(np.uint8)  # integer counts 0..16 stored as float64
    labels = bunch.target.astype(np.int64)
    X_tr, X_te, y_tr, y_te = train_test_split(
        images, labels, test_size=1 / 3, stratify=labels, random_state=DIGITS_TEST_SEED
    )
    n_val = resolve_validation(validation, len(y_tr), _DEFAULT_VALIDATION)
    X_tr, X_val, y_tr, y_val = split_stratified(X_tr, y_tr, n_val, seed, "digits", "validation")
    return Dataset(
        name="digits",
        X_train=X_tr,
        y_train=y_tr,
        X_val=X_val,
        y_val=y_val,
        X_test=X_te,
        y_test=y_te,
        max_value=16,
        classes=np.unique(labels),
        checksums={},
    )
