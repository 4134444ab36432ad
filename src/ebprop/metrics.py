"""Classification and calibration metrics, the evaluation report and a model's memory. No I/O.

Probabilities are the EBP-P class probabilities of :meth:`EBPClassifier.predict_proba`
(shape (n_samples, n_classes), rows summing to 1); labels for the probabilistic scores are
*class indices* ``0..n_classes-1`` (the column of ``proba`` that holds the true class).

Multiclass mappings, stated once:

- negative log-likelihood: mean over samples of −log p_{y} (p clipped at 1e−15 from below);
- Brier score: mean over samples of Σ_k (p_k − 1[k = y])², so it lies in [0, 2]
  (the original multiclass Brier score; scikit-learn's ``brier_score_loss`` is the binary one);
- expected calibration error: the top-label ECE — confidence = max_k p_k, correct = the argmax
  is the true class, samples binned by confidence into ``n_bins`` equal-width bins on [0, 1];
  ECE = Σ_b (n_b/n) |accuracy_b − confidence_b|.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix

__all__ = [
    "ReliabilityCurve",
    "brier_score",
    "confusion_matrix",
    "error_rate",
    "evaluation_report",
    "model_memory",
    "expected_calibration_error",
    "negative_log_likelihood",
    "per_class_error",
    "reliability_curve",
]

_EPS = 1e-15


def _labels_and_proba(y_true_idx, proba) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true_idx)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"proba must have shape (n_samples, n_classes), got {p.shape}")
    if y.ndim != 1 or y.shape[0] != p.shape[0]:
        raise ValueError(
            f"y_true_idx must have shape ({p.shape[0]},) to match proba, got {y.shape}"
        )
    if y.shape[0] == 0:
        raise ValueError("no samples: metrics need at least one")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y_true_idx must hold integer class indices, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(
            f"y_true_idx must lie in 0..{p.shape[1] - 1} (columns of proba), "
            f"got values in {y.min()}..{y.max()}"
        )
    if not np.isfinite(p).all():
        raise ValueError("proba contains NaN or infinite values")
    return y, p


def error_rate(y_true, y_pred) -> float:
    """Fraction of misclassified samples.

    Parameters
    ----------
    y_true, y_pred : array-like (n_samples,)
        Labels (any comparable values).
    """
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of one length, got {t.shape}, {p.shape}")
    if t.shape[0] == 0:
        raise ValueError("no samples: error_rate needs at least one")
    return float(np.mean(t != p))


def negative_log_likelihood(y_true_idx, proba) -> float:
    """Mean −log p_{y} over samples (natural log).

    Parameters
    ----------
    y_true_idx : (n_samples,) int class indices; proba : (n_samples, n_classes).
    """
    y, p = _labels_and_proba(y_true_idx, proba)
    return float(-np.mean(np.log(np.maximum(p[np.arange(y.shape[0]), y], _EPS))))


def brier_score(y_true_idx, proba) -> float:
    """Multiclass Brier score: mean over samples of Σ_k (p_k − 1[k = y])², in [0, 2].

    Parameters
    ----------
    y_true_idx : (n_samples,) int class indices; proba : (n_samples, n_classes).
    """
    y, p = _labels_and_proba(y_true_idx, proba)
    onehot = np.zeros_like(p)
    onehot[np.arange(y.shape[0]), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per-bin statistics of a top-label reliability diagram.

    Attributes
    ----------
    edges : (n_bins + 1,) bin edges on [0, 1].
    confidence : (n_bins,) mean max-probability in each bin (NaN for empty bins).
    accuracy : (n_bins,) fraction correct in each bin (NaN for empty bins).
    counts : (n_bins,) samples per bin.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray


def reliability_curve(y_true_idx, proba, n_bins: int = 15) -> ReliabilityCurve:
    """Bin samples by confidence max_k p_k into ``n_bins`` equal-width bins on [0, 1].

    A confidence equal to an inner edge goes to the bin above it; confidence 1 goes to the last
    bin.
    """
    if not isinstance(n_bins, (int, np.integer)) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    y, p = _labels_and_proba(y_true_idx, proba)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(bins, weights=conf, minlength=n_bins) / counts
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / counts
    return ReliabilityCurve(edges, confidence, accuracy, counts)


def expected_calibration_error(y_true_idx, proba, n_bins: int = 15) -> float:
    """Top-label ECE: Σ_b (n_b/n) |accuracy_b − confidence_b| over equal-width bins."""
    curve = reliability_curve(y_true_idx, proba, n_bins)
    filled = curve.counts > 0
    weights = curve.counts[filled] / curve.counts.sum()
    gaps = np.abs(curve.accuracy[filled] - curve.confidence[filled])
    return float(np.sum(weights * gaps))


def confusion_matrix(y_true, y_pred, labels) -> np.ndarray:
    """Counts C[i, j] of samples of class ``labels[i]`` predicted as ``labels[j]``.

    Returns
    -------
    (n_classes, n_classes) int64
    """
    labels = np.asarray(labels)
    return _sk_confusion_matrix(np.asarray(y_true), np.asarray(y_pred), labels=labels).astype(
        np.int64
    )


def per_class_error(y_true, y_pred, labels) -> np.ndarray:
    """Error rate within each true class, shape (n_classes,); NaN for a class with no samples."""
    cm = confusion_matrix(y_true, y_pred, labels)
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - np.diag(cm) / totals


def evaluation_report(est, X: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict:
    """Errors of both readouts, per-class error, confusion matrix and EBP-P calibration.

    Parameters
    ----------
    est : fitted :class:`ebprop.EBPClassifier`
    X : (n_samples, n_features) features; y : (n_samples,) labels.
    n_bins : int, bins of the expected calibration error.

    Returns
    -------
    dict (JSON-able): ``n_samples``, ``error_p``, ``error_d``, ``nll``, ``brier``, ``ece``,
    ``classes``, ``per_class_error_p``/``_d`` (None for an absent class), ``confusion_matrix_p``.
    """
    pred_p = est.predict(X, readout="probabilistic")
    pred_d = est.predict(X, readout="deterministic")
    proba = est.predict_proba(X)
    idx = est.coding.indices(y)
    classes = est.classes_
    return {
        "n_samples": int(len(y)),
        "error_p": error_rate(y, pred_p),
        "error_d": error_rate(y, pred_d),
        "nll": negative_log_likelihood(idx, proba),
        "brier": brier_score(idx, proba),
        "ece": expected_calibration_error(idx, proba, n_bins),
        "classes": classes.tolist(),
        "per_class_error_p": [
            None if np.isnan(e) else float(e) for e in per_class_error(y, pred_p, classes)
        ],
        "per_class_error_d": [
            None if np.isnan(e) else float(e) for e in per_class_error(y, pred_d, classes)
        ],
        "confusion_matrix_p": confusion_matrix(y, pred_p, classes).tolist(),
    }


def model_memory(est) -> list[dict]:
    """Per-layer parameter counts and memory of a fitted estimator, as trained and as deployed.

    Binary weights deploy as one bit each, every output unit's row of n_in bits padded to whole
    64-bit words; biases (and real weights) deploy as float32. Trained memory is every parameter
    (H and b) at the training dtype.

    Returns
    -------
    list of dict, one per layer: ``layer``, ``shape`` [n_in, n_out], ``params_1bit``,
    ``params_32bit``, ``bytes_trained``, ``bytes_deployed``.
    """
    binary = est.weights == "binary"
    itemsize = np.dtype(est.dtype).itemsize
    rows = []
    for layer, (h, b) in enumerate(zip(est.coefs_, est.intercepts_, strict=True)):
        n_in, n_out = h.shape
        one_bit = h.size if binary else 0
        full = b.size + (0 if binary else h.size)
        packed = n_out * (-(-n_in // 64)) * 8 if binary else 0
        rows.append(
            {
                "layer": layer,
                "shape": [int(n_in), int(n_out)],
                "params_1bit": int(one_bit),
                "params_32bit": int(full),
                "bytes_trained": int((h.size + b.size) * itemsize),
                "bytes_deployed": int(packed + 4 * full),
            }
        )
    return rows
