"""The results table of a sweep: runs grouped over seeds, as CSV, Markdown and a plot.

Each grid point's runs are grouped over seeds: mean ± std (ddof = 1) of the test error at the
epoch chosen on validation, per readout (EBP-P and EBP-D for EBP; BP and BC for the baselines),
with seconds per epoch and the number of weights. Written as ``results.csv``, ``results.md`` and
``results.png`` into the sweep's output directory.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import DataError
from ..fileio import atomic_write_bytes, atomic_write_text, read_json
from .experiment import BASELINE_WEIGHTS, METHODS, READOUTS, run_name

__all__ = [
    "COLUMNS",
    "aggregate",
    "plot_results",
    "read_summary",
    "results_markdown",
    "write_results",
]


def read_summary(path: str | os.PathLike) -> dict[str, Any]:
    """A run's ``summary.json``, checked for what the results table reads.

    Raises
    ------
    DataError
        Naming the file: not JSON, not an object, or lacking ``options`` or the readouts' errors.
    """
    summary = read_json(path)
    problem = None
    if not isinstance(summary, dict):
        problem = f"expected a JSON object, got {type(summary).__name__}"
    elif not isinstance(summary.get("options"), dict):
        problem = "'options' is missing or not an object"
    else:
        try:
            readouts = _readouts(summary)
            ok = isinstance(readouts, dict) and all(
                isinstance(r, dict) and {"val_error", "test_error"} <= set(r)
                for r in readouts.values()
            )
        except KeyError:
            ok = False
        if not ok:
            problem = "the readouts' val_error/test_error are missing"
    if problem:
        raise DataError(f"{path}: not a run summary ({problem}); re-run or delete that run")
    return summary


def _readouts(summary: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """{readout: {"val_error", "test_error"}} of a summary (EBP: P and D; baselines: their own)."""
    if "readouts" in summary:
        return summary["readouts"]
    return {
        "EBP-P": {"val_error": summary["val_error_p"], "test_error": summary["test_error_p"]},
        "EBP-D": {"val_error": summary["val_error_d"], "test_error": summary["test_error_d"]},
    }


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _std(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.std(vals, ddof=1)) if len(vals) >= 2 else None


def _group_of(summary: dict[str, Any]) -> str:
    opts = summary["options"]
    extra = opts.get("extra") or {}
    if "group" in extra:
        return extra["group"]
    method = summary.get("method", "ebp")
    return run_name(method, opts, ())[0]


#: Columns of ``results.csv``, in order.
COLUMNS = (
    "group",
    "method",
    "readout",
    "weights",
    "hidden",
    "filters",
    "input_dropout",
    "n",
    "seeds",
    "test_error_mean",
    "test_error_std",
    "val_error_mean",
    "best_epoch_mean",
    "epochs_run_mean",
    "seconds_per_epoch_mean",
    "n_weights",
)


def aggregate(summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the results table: one per grid point and readout, statistics over seeds.

    Parameters
    ----------
    summaries : sequence of dict
        ``summary.json`` contents of finished runs (EBP runs or baselines).

    Returns
    -------
    list of dict
        Keys :data:`COLUMNS`; errors as fractions; ``test_error_std`` uses ddof = 1 and is None
        for a single seed. Sorted by method, weights, number of weights, group, readout.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in summaries:
        groups.setdefault(_group_of(s), []).append(s)
    rows = []
    for group, members in groups.items():
        first = members[0]
        opts = first["options"]
        method = first.get("method", "ebp")
        weights = opts.get("weights") or BASELINE_WEIGHTS.get(method, "real")
        for readout in _readouts(first):
            tests = [_readouts(s)[readout]["test_error"] for s in members]
            rows.append(
                {
                    "group": group,
                    "method": method,
                    "readout": readout,
                    "weights": weights,
                    "hidden": opts.get("architecture")
                    or "x".join(str(h) for h in opts["hidden"])
                    or "none",
                    "filters": opts.get("filters") or "none",
                    "input_dropout": opts.get("input_dropout"),
                    "n": len(members),
                    "seeds": " ".join(str(s["options"]["seed"]) for s in members),
                    "test_error_mean": _mean(tests),
                    "test_error_std": _std(tests),
                    "val_error_mean": _mean([_readouts(s)[readout]["val_error"] for s in members]),
                    "best_epoch_mean": _mean([s.get("best_epoch") for s in members]),
                    "epochs_run_mean": _mean([s.get("epochs_run") for s in members]),
                    "seconds_per_epoch_mean": _mean(
                        [s.get("seconds_per_epoch_mean") for s in members]
                    ),
                    "n_weights": first.get("n_weights"),
                }
            )
    order = {m: i for i, m in enumerate(METHODS)}
    readout_order = {r: i for i, r in enumerate(itertools.chain(*READOUTS.values()))}
    rows.sort(
        key=lambda r: (order.get(r["method"], 99), r["weights"], r["n_weights"] or 0, r["group"],
                       readout_order.get(r["readout"], 99), r["readout"])
    )  # fmt: skip
    return rows


def _pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}"


def results_markdown(rows: Sequence[dict[str, Any]], title: str = "results") -> str:
    """The table as Markdown: test error in % as mean ± std (n seeds)."""
    lines = [
        f"# {title}",
        "",
        "Test error (%) at the epoch chosen on validation: mean ± std over seeds (ddof = 1).",
        "",
        "| run group | readout | weights | hidden | filters | input keep | n | test error % "
        "| val error % | best epoch | s/epoch | weights |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        test = _pct(r["test_error_mean"])
        if r["test_error_std"] is not None:
            test += f" ± {_pct(r['test_error_std'])}"
        keep = "–" if r["input_dropout"] is None else f"{r['input_dropout']:g}"
        best = "–" if r["best_epoch_mean"] is None else f"{r['best_epoch_mean']:.1f}"
        sec = "–" if r["seconds_per_epoch_mean"] is None else f"{r['seconds_per_epoch_mean']:.3g}"
        nw = "–" if r["n_weights"] is None else f"{r['n_weights']:,}"
        lines.append(
            f"| {r['group']} | {r['readout']} | {r['weights']} | {r['hidden']} | {r['filters']} "
            f"| {keep} | {r['n']} | {test} | {_pct(r['val_error_mean'])} | {best} | {sec} "
            f"| {nw} |"
        )
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as CSV text with the header ``columns`` (None as an empty field)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r[k] is None else r[k]) for k in columns})
    return buf.getvalue()


def plot_results(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Test error (%) against the number of weights, one series per method, weights and readout.

    Error bars are the std over seeds. Written atomically as PNG (matplotlib's Agg backend).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter

    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    series: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["test_error_mean"] is None or not r["n_weights"]:
            continue
        label = r["readout"] if r["method"] != "ebp" else f"{r['readout']} {r['weights']}"
        series.setdefault(label, []).append(r)
    markers = itertools.cycle("osD^v<>ph*")
    for label, pts in sorted(series.items()):
        pts = sorted(pts, key=lambda r: r["n_weights"])
        ax.errorbar(
            [r["n_weights"] for r in pts],
            [100 * r["test_error_mean"] for r in pts],
            yerr=[100 * (r["test_error_std"] or 0.0) for r in pts],
            marker=next(markers),
            linestyle="none",
            capsize=3,
            label=label,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")  # errors span 1 % to tens of %: a linear axis hides the good rows
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set_xlabel("number of weights")
    ax.set_ylabel("test error (%) at the validation-chosen epoch")
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend(fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def write_results(
    rows: Sequence[dict[str, Any]], out_dir: str | os.PathLike, title: str = "results"
) -> dict[str, Path]:
    """Write ``results.csv``, ``results.md`` and ``results.png`` (atomically) into ``out_dir``."""
    out_dir = Path(out_dir)
    files = {
        "csv": out_dir / "results.csv",
        "md": out_dir / "results.md",
        "png": out_dir / "results.png",
    }
    atomic_write_text(files["csv"], csv_text(rows, COLUMNS))
    atomic_write_text(files["md"], results_markdown(rows, title))
    plot_results(rows, files["png"])
    return files
