"""EBPClassifier's early_stopping, validation_fraction, n_iter_no_change and warm_start."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

from ebprop import EBPClassifier


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target


def test_early_stopping_scores_both_readouts_and_restores_the_best(digits):
    X, y = digits
    clf = EBPClassifier(hidden_layer_sizes=[30], max_iter=8, early_stopping=True,
                        validation_fraction=0.2, n_iter_no_change=3, random_state=0)  # fmt: skip
    clf.fit(X, y)
    assert [r["epoch"] for r in clf.history_] == list(range(1, len(clf.history_) + 1))
    assert all({"val_accuracy_p", "val_accuracy_d", "train_error"} <= set(r) for r in clf.history_)
    assert clf.validation_scores_ == [r["val_accuracy_p"] for r in clf.history_]
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    # the documented split, computed independently: the restored parameters score the best
    seed = check_random_state(0).randint(2**31)
    _, X_val, _, y_val = train_test_split(
        X, y, test_size=round(0.2 * len(y)), random_state=seed, stratify=y
    )
    assert np.mean(clf.predict(X_val) == y_val) == pytest.approx(clf.best_validation_score_)
    assert clf.n_iter_ == len(clf.history_)


def test_early_stopping_stops_after_n_iter_no_change():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(-3, 0.3, (100, 4)), rng.normal(3, 0.3, (100, 4))])
    y = np.repeat([0, 1], 100)  # separable: validation accuracy is 1 from the first epoch
    clf = EBPClassifier(hidden_layer_sizes=[8], max_iter=50, early_stopping=True,
                        n_iter_no_change=2, random_state=0).fit(X, y)  # fmt: skip
    best = int(np.argmax(clf.validation_scores_)) + 1
    assert len(clf.history_) == best + 2 < 50
    det = EBPClassifier(hidden_layer_sizes=[8], max_iter=50, early_stopping=True,
                        n_iter_no_change=2, random_state=0, readout="deterministic")  # fmt: skip
    det.fit(X, y)
    assert det.validation_scores_ == [r["val_accuracy_d"] for r in det.history_]


def test_without_early_stopping_history_has_no_validation(digits):
    X, y = digits
    clf = EBPClassifier(hidden_layer_sizes=[10], max_iter=2, random_state=0).fit(X, y)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert [set(r) for r in clf.history_] == [{"epoch", "train_error"}] * 2


def test_warm_start_continues_like_one_longer_fit(digits):
    X, y = digits
    kw = {"hidden_layer_sizes": [20], "random_state": 3}
    long = EBPClassifier(max_iter=4, **kw).fit(X, y)
    warm = EBPClassifier(max_iter=2, warm_start=True, **kw).fit(X, y)
    warm.fit(X, y)  # two more epochs from where it stopped
    assert warm.n_iter_ == 4
    for a, b in zip(long.coefs_ + long.intercepts_, warm.coefs_ + warm.intercepts_, strict=True):
        np.testing.assert_array_equal(a, b)
    cold = EBPClassifier(max_iter=2, **kw).fit(X, y)
    cold.fit(X, y)  # without warm_start: a fresh start, the same as the first fit
    np.testing.assert_array_equal(
        cold.coefs_[0], EBPClassifier(max_iter=2, **kw).fit(X, y).coefs_[0]
    )
    with pytest.raises(ValueError, match="warm_start: y holds classes"):
        warm.fit(X[y < 5], y[y < 5])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"validation_fraction": 0.0}, "validation_fraction must be a fraction in"),
        ({"validation_fraction": 1.0}, "validation_fraction must be a fraction in"),
        ({"validation_fraction": True}, "validation_fraction must be a fraction in"),
        ({"n_iter_no_change": 0}, "n_iter_no_change must be a positive integer"),
        ({"early_stopping": "yes"}, "early_stopping must be True or False"),
        ({"warm_start": 1}, "warm_start must be True or False"),
    ],
)
def test_bad_parameters(digits, params, message):
    X, y = digits
    with pytest.raises(ValueError, match=message):
        EBPClassifier(**params).fit(X[:50], y[:50])


def test_training_uses_one_blas_thread_unless_the_environment_says(monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    from ebprop.trainer import training_threads

    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    with threadpool_limits(limits=2, user_api="blas"):
        two = blas_threads()
        with training_threads():
            assert blas_threads() == {1}
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        with training_threads():
            assert blas_threads() == two
