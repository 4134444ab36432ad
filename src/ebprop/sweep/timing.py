"""Time to accuracy: the training wall time a run needed to first reach a validation error.

Read from a run folder's ``metrics.jsonl`` (finished or not): every epoch records ``seconds``,
its training time with evaluation excluded (EBP and the baselines alike), ``cpu_seconds``, the
same span's process CPU time (on a shared machine the one-core time), and the validation
error of the deployable network — EBP-D (``val_error_d``) for EBP, the one readout
(``val_error``) of a baseline (BinaryNet: its sign network). The time to a target is the sum of
``seconds`` over the epochs up to and including the first whose error is at or below it.

    ebprop report runs/deployable_vs_binarynet --time-to 3.0,2.5
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..exceptions import DataError
from .experiment import READOUTS, run_name

__all__ = ["TIME_COLUMNS", "parse_targets", "time_rows", "time_to_error", "times_csv"]

#: Columns of a time-to-accuracy table; then per target p (percent) ``t_<p>`` (wall seconds),
#: ``cpu_<p>`` (CPU seconds) and ``epoch_<p>``.
TIME_COLUMNS = ("group", "method", "readout", "seed", "epochs_run", "best_val_error")


def parse_targets(text: str) -> list[float]:
    """Targets in percent from ``"3.0,2.5"`` → [3.0, 2.5]; ValueError for anything else."""
    try:
        targets = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        targets = []
    if not targets or any(not 0 < t < 100 for t in targets):
        raise ValueError(f"--time-to {text!r}: give error targets in percent, e.g. 3.0,2.5")
    return targets


def time_to_error(
    history: Sequence[dict], key: str, target: float, clock: str = "seconds"
) -> tuple[float | None, int] | None:
    """(training seconds, epoch) at the first epoch with ``history[key] <= target`` (a
    fraction), or None when no epoch reached it.

    ``clock``: ``"seconds"`` (wall) or ``"cpu_seconds"`` (process CPU time; the seconds are None
    when an epoch up to the hit lacks it: recorded before it existed, or resumed mid-epoch).
    """
    total: float | None = 0.0
    for record in history:
        value = record.get(clock)
        total = None if total is None or value is None else total + float(value)
        err = record.get(key)
        if err is not None and err <= target:
            return total, int(record["epoch"])
    return None


def _read_jsonl(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable metrics ({exc})") from None


def time_rows(run_dirs: Sequence[Path], targets: Sequence[float]) -> list[dict[str, Any]]:
    """One row per run folder (one holding ``options.json`` and ``metrics.jsonl``).

    Parameters
    ----------
    run_dirs : run folders
    targets : validation errors in percent (e.g. [3.0, 2.5])
    """
    rows = []
    for d in run_dirs:
        opts = json.loads((d / "options.json").read_text())
        method = opts.get("method", "ebp")  # EBP runs' options have no method field
        history = _read_jsonl(d / "metrics.jsonl")
        key = "val_error_d" if method == "ebp" else "val_error"
        readout = "EBP-D" if method == "ebp" else READOUTS[method][0]
        errors = [r[key] for r in history if r.get(key) is not None]
        extra = opts.get("extra") or {}
        row = {
            "group": extra.get("group") or run_name(method, opts, ())[0],
            "method": method,
            "readout": readout,
            "seed": int(opts["seed"]),
            "epochs_run": len(history),
            "best_val_error": min(errors) if errors else None,
        }
        for t in targets:
            hit = time_to_error(history, key, t / 100.0)
            cpu = time_to_error(history, key, t / 100.0, "cpu_seconds")
            row[f"t_{t:g}"] = None if hit is None else round(hit[0], 1)
            row[f"cpu_{t:g}"] = None if cpu is None or cpu[0] is None else round(cpu[0], 1)
            row[f"epoch_{t:g}"] = None if hit is None else hit[1]
        rows.append(row)
    rows.sort(key=lambda r: (r["method"], r["group"], r["seed"]))
    return rows


def times_csv(rows: Sequence[dict[str, Any]], targets: Sequence[float]) -> str:
    """The rows as CSV (columns :data:`TIME_COLUMNS`, then ``t_<p>`` and ``epoch_<p>``)."""
    columns = [*TIME_COLUMNS]
    for t in targets:
        columns += [f"t_{t:g}", f"cpu_{t:g}", f"epoch_{t:g}"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    return buf.getvalue()
