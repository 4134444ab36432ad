"""Plots are written as valid PNG files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ebprop import metrics, plots


def _assert_png(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.verify()


def test_every_plot_writes_a_valid_png(tmp_path):
    history = [
        {"epoch": 1, "train_error": 0.3, "val_error_p": 0.2, "val_error_d": 0.25,
         "test_error_p": 0.21, "test_error_d": 0.3},
        {"epoch": 2, "train_error": 0.1, "val_error_p": None, "val_error_d": None,
         "test_error_p": 0.1, "test_error_d": 0.2},
    ]  # fmt: skip
    plots.learning_curves(history, tmp_path / "lc.png")
    plots.confusion_matrix_plot(np.array([[5, 1], [2, 7]]), ["a", "b"], tmp_path / "cm.png")
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=100)
    curve = metrics.reliability_curve(rng.integers(0, 3, 100), p)
    plots.reliability_diagram(curve, tmp_path / "rel.png")
    plots.confidence_histograms(
        [rng.normal(size=(5, 4)), rng.normal(size=(4, 2))], tmp_path / "h.png"
    )
    for name in ("lc", "cm", "rel", "h"):
        _assert_png(tmp_path / f"{name}.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.png", "h.png", "lc.png", "rel.png"]


def test_plots_reject_empty_input(tmp_path):
    with pytest.raises(ValueError, match="at least one epoch"):
        plots.learning_curves([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="at least one layer"):
        plots.confidence_histograms([], tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


def test_importing_the_run_engine_leaves_the_matplotlib_backend_alone():
    import subprocess
    import sys

    code = (
        "import matplotlib; matplotlib.use('svg'); import ebprop.runs, ebprop.plots; "
        "print(matplotlib.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"
