"""Published tables: one row per run in a small CSV, and the Markdown the docs embed from it.

A finished sweep becomes a *runs table*: one row per run and readout with its seed, the
validation and test error at the epoch validation chose, the epoch time, the deployed size and
where the number came from (ebprop version, git commit, vector width). Committed under
``experiments/`` next to the sweep file, it is what the docs' tables are generated from:

    ebprop report runs/mnist_deployable --format csv > experiments/mnist_deployable.csv
    ebprop report experiments/mnist_deployable.csv --format markdown

A docs page marks each generated table as ::

    <!-- table: experiments/mnist_deployable.csv -->
    ...generated Markdown...
    <!-- end table -->

and :func:`embed_tables` rewrites every such block from its CSV (the test suite checks that the
pages equal their CSVs; ``python -m ebprop.sweep.tables README.md docs/results.md`` updates
them).
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import DataError
from ..runs.method import TrainingMethod
from ..runs.options import TrainOptions
from .experiment import BASELINE_WEIGHTS, METHODS, READOUTS, run_name
from .results import csv_text

__all__ = [
    "RUN_COLUMNS",
    "docs_markdown",
    "embed_tables",
    "read_runs_csv",
    "recipe_flags",
    "run_rows",
    "runs_csv",
]

#: Columns of a runs table (``ebprop report --format csv``), in order. Errors are fractions.
RUN_COLUMNS = (
    "group",
    "method",
    "readout",
    "weights",
    "network",
    "recipe",
    "filters",
    "input_dropout",
    "seed",
    "val_error",
    "test_error",
    "best_epoch",
    "epochs_run",
    "seconds_per_epoch",
    "n_weights",
    "bytes_deployed",
    "ebprop_version",
    "git_commit",
    "vector_bits",
)
#: Run options a recipe never names: shown in their own columns (network, weights, seed), where
#: the data lives (a path of this machine), a memory budget that changes nothing trained.
_NOT_IN_RECIPE = frozenset(
    {
        "dataset",
        "data_dir",
        "hidden",
        "architecture",
        "weights",
        "seed",
        "max_memory",
        "extra",
        "method",
    }  # fmt: skip
)
_INT = {"seed", "best_epoch", "epochs_run", "n_weights", "bytes_deployed", "vector_bits"}
_FLOAT = {"input_dropout", "val_error", "test_error", "seconds_per_epoch"}


def _readouts(summary: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    if "readouts" in summary:
        return summary["readouts"]
    return {
        "EBP-P": {"val_error": summary["val_error_p"], "test_error": summary["test_error_p"]},
        "EBP-D": {"val_error": summary["val_error_d"], "test_error": summary["test_error_d"]},
    }


def _group_of(summary: dict[str, Any]) -> str:
    opts = summary["options"]
    extra = opts.get("extra") or {}
    if "group" in extra:
        return extra["group"]
    return run_name(summary.get("method", "ebp"), opts, ())[0]


def _sizes(summary: dict[str, Any]) -> list[int] | None:
    """n_0..n_L of a dense network from its summary (None when it does not say, or is conv)."""
    if summary["options"].get("architecture"):
        return None
    hidden = [int(h) for h in summary["options"].get("hidden") or []]
    n_in, n_weights = summary.get("n_features"), summary.get("n_weights")
    if n_in is None or n_weights is None:
        return None
    sizes = [int(n_in), *hidden]
    inner = sum(a * b for a, b in itertools.pairwise(sizes))
    n_out, rest = divmod(int(n_weights) - inner, sizes[-1])
    return sizes + [n_out] if n_out > 0 and rest == 0 else None


def _bytes_deployed(summary: dict[str, Any], weights: str) -> int | None:
    """The exported size (:func:`ebprop.metrics.model_memory`'s rule) from the layer sizes."""
    if summary.get("bytes_deployed") is not None:
        return int(summary["bytes_deployed"])
    sizes = _sizes(summary)
    if sizes is None:
        return None
    total = 0
    for n_in, n_out in itertools.pairwise(sizes):
        if weights == "binary":  # one bit per weight, rows padded to 64-bit words; float32 bias
            total += n_out * (-(-n_in // 64)) * 8 + 4 * n_out
        else:
            total += 4 * (n_in * n_out + n_out)
    return total


def _chosen(summary: dict[str, Any], readout: str) -> dict[str, Any]:
    """A readout's validation and test error at the epoch *its own* validation error chose.

    An EBP run keeps a model per readout (``model_p.npz``, ``model_d.npz``: the summary's
    ``models``), and each readout is published at its own chosen epoch; other summaries give
    every readout at the run's one chosen epoch.
    """
    own = (summary.get("models") or {}).get(readout)
    if own is not None:
        return {"val_error": own["val_error"], "test_error": own["test_error"],
                "best_epoch": own["epoch"]}  # fmt: skip
    r = _readouts(summary)[readout]
    return {"val_error": r["val_error"], "test_error": r["test_error"],
            "best_epoch": summary.get("best_epoch")}  # fmt: skip


def recipe_flags(opts: dict[str, Any], options: type = TrainOptions) -> list[str]:
    """The ``ebprop train`` flags of a run's settings beyond network, weights, method and seed.

    Every field of ``options``, the run's options class (EBP's :class:`~ebprop.runs.TrainOptions`,
    or a baseline's: ``ebprop train --method …`` takes its fields as flags; no list to keep, a
    new option is named as soon as it exists) whose stored value in ``opts`` (``options.json``)
    is not the field's default, ``epochs`` always and first, in field order. A setting a run did
    not store (older than it) is not named.
    """
    fields = [f for f in dataclasses.fields(options) if f.name not in _NOT_IN_RECIPE]
    parts = []
    for f in sorted(fields, key=lambda f: f.name != "epochs"):
        if f.name not in opts or (f.name != "epochs" and opts[f.name] == f.default):
            continue
        value, flag = opts[f.name], "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + flag[2:])
        elif f.name == "resize":  # the command line's --resize/--no-resize
            parts.append(flag if value == "resize" else "--no-resize")
        elif isinstance(value, list | tuple):  # image_size: HxW
            parts += [flag, "x".join(map(str, value))]
        else:
            parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return parts


def run_rows(
    summaries: Sequence[dict[str, Any]], methods: Mapping[str, TrainingMethod] | None = None
) -> list[dict[str, Any]]:
    """One row per finished run and readout (keys :data:`RUN_COLUMNS`).

    Each readout at the epoch its own validation error chose (:func:`_chosen`). Sorted by
    method, weights, number of weights, group, recipe, readout and seed. ``methods`` (as handed to
    the sweep) gives each method's options class, whose fields make the recipe; a method not in it
    (or ``methods`` None) is described by EBP's.
    """
    rows = []
    for s in summaries:
        opts = s["options"]
        method = s.get("method", "ebp")
        known = (methods or {}).get(method)
        recipe = " ".join(recipe_flags(opts, known.options if known else TrainOptions))
        weights = opts.get("weights") or BASELINE_WEIGHTS.get(method, "real")
        sizes = _sizes(s)
        if opts.get("architecture"):  # a layer string such as 16C5-MP2-32C5-MP2-128
            network = f"{s.get('n_features', '?')}-{opts['architecture']}"
        elif sizes:
            network = "-".join(map(str, sizes))
        else:
            network = "x".join(map(str, opts["hidden"]))
        for readout in _readouts(s):
            chosen = _chosen(s, readout)
            rows.append(
                {
                    "group": _group_of(s),
                    "method": method,
                    "readout": readout,
                    "weights": weights,
                    "network": network or "none",
                    "recipe": recipe,
                    "filters": opts.get("filters") or "none",
                    "input_dropout": opts.get("input_dropout"),
                    "seed": int(opts["seed"]),
                    **chosen,
                    "epochs_run": s.get("epochs_run"),
                    "seconds_per_epoch": s.get("seconds_per_epoch_mean"),
                    "n_weights": s.get("n_weights"),
                    "bytes_deployed": _bytes_deployed(s, weights),
                    "ebprop_version": s.get("ebprop_version"),
                    "git_commit": s.get("git_commit"),
                    "vector_bits": s.get("vector_bits"),
                }
            )
    order = {m: i for i, m in enumerate(METHODS)}
    readout_order = {r: i for i, r in enumerate(itertools.chain(*READOUTS.values()))}
    rows.sort(
        key=lambda r: (order.get(r["method"], 99), r["weights"], r["n_weights"] or 0, r["group"],
                       r["recipe"], readout_order.get(r["readout"], 99), r["readout"], r["seed"])
    )  # fmt: skip
    return rows


def runs_csv(rows: Sequence[dict[str, Any]]) -> str:
    """A runs table as CSV text (None as an empty field)."""
    return csv_text(rows, RUN_COLUMNS)


def read_runs_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """A runs table written by :func:`runs_csv`, with its numbers typed again.

    Raises
    ------
    DataError
        Naming the file, when its header is not :data:`RUN_COLUMNS` or a number does not parse.
    """
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != RUN_COLUMNS:
            raise DataError(
                f"{path}: not a runs table (columns {reader.fieldnames}); write one with "
                "ebprop report SWEEP_DIR --format csv"
            )
        rows = []
        for line, raw in enumerate(reader, start=2):
            row: dict[str, Any] = {}
            for k, v in raw.items():
                try:
                    if v == "":
                        row[k] = None
                    elif k in _INT:
                        row[k] = int(v)
                    elif k in _FLOAT:
                        row[k] = float(v)
                    else:
                        row[k] = v
                except ValueError:
                    raise DataError(f"{path}:{line}: {k} = {v!r} is not a number") from None
            rows.append(row)
    return rows


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def _size(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / 1024:,.1f} KiB" if n < 1024**2 else f"{n / 1024**2:,.2f} MiB"


def _stats(members: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """("mean ± std", "a / b / c") of the members' test errors in % (std with ddof = 1)."""
    tests = [m["test_error"] for m in members if m["test_error"] is not None]
    if not tests:
        return "–", "–"
    mean = _pct(float(np.mean(tests)))
    if len(tests) >= 2:
        mean += f" ± {_pct(float(np.std(tests, ddof=1)))}"
    return mean, " / ".join(_pct(m["test_error"]) for m in members)


def docs_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The table the docs embed: one line per network and recipe, statistics over its seeds.

    Columns: the deployed readout (EBP-D; a baseline's own readout) and EBP-P, each as the test
    error at the epoch its own validation error chose, mean ± std (ddof = 1) and per seed; the
    deployed readout's mean validation error and chosen epochs; seconds per training epoch; the
    exported size; and the ebprop version and vector width that produced the runs.
    """
    # A sweep's group names only what its grid varies, so two sweeps (or two grids) can give the
    # same name to different recipes: a table row is one group *and* recipe.
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["group"], r["network"], r["recipe"]), []).append(r)
    lines = [
        "| network | recipe | seeds | deployed test % | per seed | EBP-P test % | per seed "
        "| deployed val % | epochs | s/epoch | size | made by |",
        "|---|---|---|---:|---|---:|---|---:|---|---:|---:|---|",
    ]
    for members in groups.values():
        first = members[0]
        deployed = [m for m in members if m["readout"] != "EBP-P"]
        prob = [m for m in members if m["readout"] == "EBP-P"]
        head = deployed or prob
        d_mean, d_seeds = _stats(deployed)
        p_mean, p_seeds = _stats(prob)
        vals = [m["val_error"] for m in deployed if m["val_error"] is not None]
        epochs = [m["best_epoch"] for m in deployed if m["best_epoch"] is not None]
        secs = [m["seconds_per_epoch"] for m in head if m["seconds_per_epoch"] is not None]
        made = sorted(
            {f"{m['ebprop_version'] or '?'}, {m['vector_bits'] or '?'}-bit" for m in members}
        )
        label = f"{first['weights']} EBP" if first["method"] == "ebp" else first["method"]
        lines.append(
            f"| {first['network']}, {label} "
            f"| `{first['recipe']}` | {' '.join(str(m['seed']) for m in head)} "
            f"| {d_mean} | {d_seeds} | {p_mean} | {p_seeds} "
            f"| {_pct(float(np.mean(vals))) if vals else '–'} "
            f"| {' / '.join(str(e) for e in epochs) or '–'} "
            f"| {f'{np.mean(secs):.3g}' if secs else '–'} "
            f"| {_size(first['bytes_deployed'] if deployed else None)} "
            f"| {'; '.join(made)} |"
        )
    return "\n".join(lines) + "\n"


_BLOCK = re.compile(r"(<!-- table: (?P<csv>[^ ]+) -->\n)(?P<body>.*?)(<!-- end table -->)", re.S)


def embed_tables(text: str, root: str | os.PathLike) -> str:
    """``text`` with every marked table block regenerated from its CSV (paths from ``root``)."""

    def table(m: re.Match) -> str:
        body = docs_markdown(read_runs_csv(Path(root) / m["csv"]))
        return m.group(1) + body + m.group(4)

    return _BLOCK.sub(table, text)


def main(argv: Sequence[str]) -> int:  # pragma: no cover - a maintainer's tool
    """Rewrite the marked tables of the given Markdown files from their CSVs (repo root: cwd)."""
    for name in argv:
        path = Path(name)
        old = path.read_text(encoding="utf-8")
        new = embed_tables(old, Path.cwd())
        if new != old:
            path.write_text(new, encoding="utf-8")
            print(f"updated {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
