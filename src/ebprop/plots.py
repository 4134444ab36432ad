"""Figures of a run, written as PNG atomically.

Only matplotlib's object-oriented :class:`~matplotlib.figure.Figure` API is used: no pyplot, no
global figure registry and no backend switch, so importing this module (or :mod:`ebprop.runs`)
leaves a notebook's backend alone, and figures are drawn headless without a display.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from .fileio import atomic_write_bytes
from .metrics import ReliabilityCurve

__all__ = [
    "confidence_histograms",
    "confusion_matrix_plot",
    "learning_curves",
    "reliability_diagram",
    "save_figure",
]


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> None:
    """Render ``fig`` to PNG in memory (Agg canvas) and write it atomically."""
    buf = io.BytesIO()
    fig.tight_layout()  # cheaper than bbox_inches="tight", which renders twice
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())


def _values(history: Sequence[dict], key: str) -> np.ndarray:
    return np.array([np.nan if r.get(key) is None else r[key] for r in history], dtype=float)


def learning_curves(history: Sequence[dict], path: str | os.PathLike) -> None:
    """Error per epoch: online training error, validation and test for EBP-P and EBP-D.

    Parameters
    ----------
    history : records of ``metrics.jsonl`` (keys ``epoch``, ``train_error``, ``val_error_p`` ...).
    """
    if not history:
        raise ValueError("learning_curves needs at least one epoch record")
    epochs = _values(history, "epoch")
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    styles = [
        ("train_error", "train (online, EBP-P)", "0.5", "-"),
        ("val_error_p", "validation EBP-P", "C0", "--"),
        ("val_error_d", "validation EBP-D", "C1", "--"),
        ("test_error_p", "test EBP-P", "C0", "-"),
        ("test_error_d", "test EBP-D", "C1", "-"),
    ]
    for key, label, color, ls in styles:
        y = _values(history, key)
        if np.isfinite(y).any():
            ax.plot(epochs, 100 * y, ls, color=color, marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.set_title("Learning curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def confusion_matrix_plot(cm: np.ndarray, labels: Sequence, path: str | os.PathLike) -> None:
    """Confusion matrix (rows: true class, columns: predicted), counts in the cells."""
    cm = np.asarray(cm)
    k = cm.shape[0]
    fig = Figure(figsize=(1.0 + 0.45 * k, 0.8 + 0.45 * k))
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ticks = np.arange(k)
    ax.set_xticks(ticks, [str(c) for c in labels])
    ax.set_yticks(ticks, [str(c) for c in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(k):
        for j in range(k):
            color = "white" if cm[i, j] > threshold else "black"
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set_title("Confusion matrix (EBP-P, test)")
    save_figure(fig, path)


def reliability_diagram(curve: ReliabilityCurve, path: str | os.PathLike) -> None:
    """Accuracy against confidence per bin, with the diagonal of perfect calibration."""
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    centers = (curve.edges[:-1] + curve.edges[1:]) / 2
    width = np.diff(curve.edges)
    filled = curve.counts > 0
    ax.bar(
        centers[filled], curve.accuracy[filled], width=width[filled], edgecolor="k",
        color="C0", alpha=0.7, label="accuracy",
    )  # fmt: skip
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.plot(centers[filled], curve.confidence[filled], "o", color="C3", ms=3, label="confidence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (max class probability)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability diagram (EBP-P, test)")
    ax.legend(fontsize=8, loc="upper left")
    save_figure(fig, path)


def confidence_histograms(coefs: Sequence[np.ndarray], path: str | os.PathLike) -> None:
    """Histogram of the posterior confidence |tanh H| of binary weights, one panel per layer."""
    if not coefs:
        raise ValueError("confidence_histograms needs at least one layer")
    fig = Figure(figsize=(3.2 * len(coefs), 3))
    axes = fig.subplots(1, len(coefs), squeeze=False)
    for layer, (ax, h) in enumerate(zip(axes[0], coefs, strict=True)):
        conf = np.abs(np.tanh(np.asarray(h, dtype=np.float64))).ravel()
        ax.hist(conf, bins=40, range=(0, 1), color="C2")
        ax.set_yscale("log")
        ax.set_title(f"layer {layer} {h.shape[0]}x{h.shape[1]}", fontsize=9)
        ax.set_xlabel("|tanh H|")
    axes[0][0].set_ylabel("weights")
    save_figure(fig, path)
