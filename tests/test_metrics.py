"""Metrics against hand-worked values and an independent loop implementation."""

from __future__ import annotations

import numpy as np
import pytest

from ebprop import metrics


def test_error_rate_counts_mismatches():
    assert metrics.error_rate([0, 1, 2, 3], [0, 1, 0, 0]) == 0.5
    assert metrics.error_rate(np.array(["a", "b"]), np.array(["a", "b"])) == 0.0


@pytest.mark.parametrize(("t", "p", "match"), [([0, 1], [0], "one length"), ([], [], "no samples")])
def test_error_rate_rejects_bad_input(t, p, match):
    with pytest.raises(ValueError, match=match):
        metrics.error_rate(t, p)


def test_nll_and_brier_hand_worked():
    proba = np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])
    y = np.array([0, 1])
    assert metrics.negative_log_likelihood(y, proba) == pytest.approx(
        (-np.log(0.5) - np.log(0.1)) / 2
    )
    # sample 0: .25 + .0625 + .0625 = .375; sample 1: .01 + .81 + .64 = 1.46
    assert metrics.brier_score(y, proba) == pytest.approx((0.375 + 1.46) / 2)


def test_nll_clips_zero_probability():
    assert np.isfinite(metrics.negative_log_likelihood([1], [[1.0, 0.0]]))


def test_brier_is_zero_for_perfect_and_two_for_confidently_wrong():
    assert metrics.brier_score([0, 1], [[1, 0], [0, 1]]) == 0.0
    assert metrics.brier_score([0], [[0.0, 1.0]]) == 2.0


def _ece_by_loop(y, proba, n_bins):
    conf, pred = proba.max(1), proba.argmax(1)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        inside = (conf >= lo) & ((conf < hi) if b < n_bins - 1 else (conf <= hi))
        if inside.any():
            total += inside.mean() * abs((pred[inside] == y[inside]).mean() - conf[inside].mean())
    return total


def test_ece_matches_a_loop_implementation():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 4)) * 2
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, 4, size=500)
    for n_bins in (1, 10, 15):
        assert metrics.expected_calibration_error(y, proba, n_bins) == pytest.approx(
            _ece_by_loop(y, proba, n_bins)
        )


def test_reliability_curve_bins_edges_and_empty_bins():
    proba = np.array([[1.0, 0.0], [0.5, 0.5], [0.7, 0.3]])
    curve = metrics.reliability_curve(np.array([0, 1, 1]), proba, n_bins=2)
    # 0.5 sits on the inner edge: goes to the upper bin, with 0.7 and 1.0.
    assert curve.counts.tolist() == [0, 3]
    assert np.isnan(curve.accuracy[0]) and np.isnan(curve.confidence[0])
    assert curve.accuracy[1] == pytest.approx(1 / 3)  # argmax 0 for all; one true 0
    assert curve.confidence[1] == pytest.approx((1.0 + 0.5 + 0.7) / 3)


def test_calibrated_predictions_have_small_ece():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.5, 1.0, size=20000)
    correct = rng.uniform(size=conf.size) < conf
    y = np.where(correct, 0, 1)
    proba = np.stack([conf, 1 - conf], axis=1)
    assert metrics.expected_calibration_error(y, proba) < 0.02


@pytest.mark.parametrize(
    ("y", "proba", "match"),
    [
        ([0, 1], [[0.5, 0.5]], "shape"),
        ([0], [0.5, 0.5], "n_samples, n_classes"),
        ([2], [[0.5, 0.5]], "must lie in 0..1"),
        ([-1], [[0.5, 0.5]], "must lie in 0..1"),
        ([0.0], [[0.5, 0.5]], "integer class indices"),
        ([0], [[np.nan, 0.5]], "NaN"),
        (np.zeros(0, int), np.zeros((0, 2)), "no samples"),
    ],
)
def test_probabilistic_metrics_validate(y, proba, match):
    for fn in (
        metrics.negative_log_likelihood,
        metrics.brier_score,
        metrics.expected_calibration_error,
    ):
        with pytest.raises(ValueError, match=match):
            fn(np.asarray(y), proba)


@pytest.mark.parametrize("n_bins", [0, 1.5, True])
def test_reliability_curve_rejects_bad_bins(n_bins):
    with pytest.raises(ValueError, match="n_bins"):
        metrics.reliability_curve([0], [[1.0, 0.0]], n_bins=n_bins)


def test_confusion_matrix_and_per_class_error():
    y = [0, 0, 1, 1, 1]
    p = [0, 1, 1, 1, 0]
    cm = metrics.confusion_matrix(y, p, labels=[0, 1, 2])
    assert cm.tolist() == [[1, 1, 0], [1, 2, 0], [0, 0, 0]]
    err = metrics.per_class_error(y, p, labels=[0, 1, 2])
    assert err[:2] == pytest.approx([0.5, 1 / 3])
    assert np.isnan(err[2])
