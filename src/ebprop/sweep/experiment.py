"""Sweeps: grids of training runs described in a TOML file, run resumably, summarised in a table.

An experiment file (see ``docs/sweeps.md`` for every key)::

    name = "smoke"
    [settings]                      # defaults for every grid
    dataset = "digits"
    epochs = 2
    [[grid]]                        # a list is an axis; grids are expanded one by one
    method = "ebp"
    hidden = [[16], [16, 16]]       # a list of architectures (one architecture: [16, 16])
    weights = ["binary", "real"]
    seed = [0, 1]

Each run gets its own directory ``<out>/<name>`` with a stable, readable name such as
``ebp-binary-h800x800-f_default-do0.8-s0``. A run whose ``summary.json`` exists is skipped; one
with only ``options.json``/``checkpoint.npz`` is resumed. Runs go one after the other, through
joblib processes (``jobs > 1``) or to a Dask distributed scheduler (``scheduler=ADDRESS``; run
directories must then be on a filesystem the workers share).

The results table groups the runs of each grid point over seeds: mean ± std (ddof = 1) of the test
error at the epoch chosen on validation, per readout (EBP-P and EBP-D for EBP; BP and BC for the
baselines), with seconds per epoch and the number of weights. It is written as ``results.csv``,
``results.md`` and the plot ``results.png`` into the sweep's output directory.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import EBPropError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "METHODS",
    "READOUTS",
    "Experiment",
    "ExperimentError",
    "RunSpec",
    "SweepResult",
    "aggregate",
    "execute_run",
    "load_experiment",
    "parse_experiment",
    "plot_results",
    "results_markdown",
    "run_status",
    "run_sweep",
    "write_results",
]

#: The training methods a grid can name.
METHODS = ("ebp", "bp", "binaryconnect")
#: Readouts of each method, as they appear in the results table.
READOUTS = {"ebp": ("EBP-P", "EBP-D"), "bp": ("BP",), "binaryconnect": ("BC",)}

# Keys every method takes, keys of EBP only, keys of the baselines only.
_COMMON = (
    "method",
    "dataset",
    "data_dir",
    "validation",
    "hidden",
    "epochs",
    "batch_size",
    "patience",
    "filters",
    "scaling",
    "deskew",
    "seed",
    "dtype",
    "input_dropout",
)
_EBP_ONLY = ("weights", "init_variance", "prior_variance", "select_by")
_BASELINE_ONLY = ("activation", "learning_rate", "lr_decay", "hidden_dropout", "batch_norm")
_KEYS = {
    "ebp": frozenset(_COMMON + _EBP_ONLY),
    "bp": frozenset(_COMMON + _BASELINE_ONLY),
    "binaryconnect": frozenset(_COMMON + _BASELINE_ONLY),
}
_ALL_KEYS = frozenset().union(*_KEYS.values())
_BASELINE_WEIGHTS = {"bp": "real", "binaryconnect": "binary"}
# Keys that may be null: TOML has no null, so the string "none" stands for it.
_NULLABLE = frozenset(
    {"data_dir", "validation", "patience", "input_dropout", "hidden_dropout", "filters"}
)
_TOP_LEVEL = frozenset({"name", "description", "out", "settings", "grid"})
# Short labels of keys that appear in a run's name only when they are an axis of its grid.
_ABBREV = {
    "dataset": "ds",
    "validation": "val",
    "epochs": "ep",
    "batch_size": "bs",
    "patience": "pat",
    "scaling": "sc",
    "deskew": "dsk",
    "dtype": "",
    "init_variance": "iv",
    "prior_variance": "pv",
    "select_by": "sel",
    "learning_rate": "lr",
    "lr_decay": "lrd",
    "batch_norm": "bn",
}
# Keys always in the name (or implied by it); never appended as axes.
_NAMED = frozenset(
    {
        "method",
        "weights",
        "hidden",
        "filters",
        "input_dropout",
        "activation",
        "hidden_dropout",
        "seed",
        "data_dir",
    }
)


class ExperimentError(EBPropError, ValueError):
    """An experiment file is malformed: unknown key, bad value, colliding runs."""


# ---------------------------------------------------------------------------- experiment files
@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its directory name, method and full options.

    ``options`` is the ``to_dict()`` of a :class:`ebprop.runs.TrainOptions` (``method ==
    "ebp"``) or :class:`ebprop.baselines.BaselineOptions`, with ``data_dir`` left to the sweep.
    """

    name: str
    method: str
    options: dict[str, Any]

    @property
    def group(self) -> str:
        """The name without its seed: runs that differ only in seed share it."""
        return self.options["extra"]["group"]


@dataclass
class Experiment:
    """A parsed experiment file.

    Attributes
    ----------
    name, description : str
    runs : list of RunSpec
        Every run of every grid, in file order, without duplicates.
    out : str or None
        The file's ``out`` key (default output directory), if any.
    data_dir : str or None
        The file's ``data_dir`` setting, if any (the CLI's ``--data-dir`` overrides it).
    source : str
        The TOML text, copied into the output directory.
    """

    name: str
    description: str = ""
    runs: list[RunSpec] = field(default_factory=list)
    out: str | None = None
    data_dir: str | None = None
    source: str = ""


def _fmt(value: Any) -> str:
    """A value as it appears in a run name: 0.8, 1e-3 → 0.001, True → 1, None → none."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", str(value).replace(",", "+"))


def _run_name(method: str, opts: dict[str, Any], axes: Sequence[str]) -> tuple[str, str]:
    """(group, name) of a run: ``<method>-<weights>-h<hidden>-f_<filters>-do<keep>...-s<seed>``."""
    weights = opts.get("weights") or _BASELINE_WEIGHTS[method]
    hidden = "x".join(str(h) for h in opts["hidden"]) or "none"
    keep = opts.get("input_dropout")
    parts = [method, weights, f"h{hidden}", f"f_{_fmt(opts.get('filters'))}"]
    parts.append(f"do{_fmt(keep if keep is not None else 1)}")
    if method != "ebp":
        parts.append(opts.get("activation", "relu"))
        hd = opts.get("hidden_dropout")
        parts.append(f"hd{_fmt(hd if hd is not None else 1)}")
    for key in axes:
        if key not in _NAMED:
            parts.append(f"{_ABBREV.get(key, key)}{_fmt(opts[key])}")
    group = "-".join(parts)
    return group, f"{group}-s{opts['seed']}"


def _where(path: str, where: str) -> str:
    return f"{path}: {where}" if where else path


def _normalise(key: str, value: Any, where: str) -> Any:
    """A TOML value of ``key`` as the options expect it ("none" → None for nullable keys)."""
    if isinstance(value, dict):
        raise ExperimentError(f"{where}: {key} must be a value or a list of values, not a table")
    if key in _NULLABLE and isinstance(value, str) and value.strip().lower() == "none":
        return None
    if key == "filters":
        from .datasets import parse_filters

        if not isinstance(value, str):
            raise ExperimentError(
                f"{where}: filters must be a string such as 'default', got {value!r}"
            )
        try:
            names = parse_filters(value)
        except ValueError as exc:
            raise ExperimentError(f"{where}: filters: {exc}") from None
        return value if names else None
    if key == "dataset":
        from .datasets import DATASETS

        if value not in DATASETS:
            raise ExperimentError(
                f"{where}: unknown dataset {value!r}; choose from {', '.join(DATASETS)}"
            )
    if key == "scaling":
        from .datasets import SCALINGS

        if value not in SCALINGS:
            raise ExperimentError(
                f"{where}: unknown scaling {value!r}; choose from {', '.join(SCALINGS)}"
            )
    if key == "method" and value not in METHODS:
        raise ExperimentError(
            f"{where}: unknown method {value!r}; choose from {', '.join(METHODS)}"
        )
    return value


def _axis(key: str, value: Any, where: str) -> list[Any]:
    """The values of one key: a list is an axis, anything else one value.

    ``hidden`` is special: ``[800, 800]`` is one architecture, ``[[800], [800, 800]]`` an axis
    of two, ``800`` one layer of 800.
    """
    if key == "hidden":
        if isinstance(value, int) and not isinstance(value, bool):
            archs = [[value]]
        elif isinstance(value, list) and all(isinstance(v, list) for v in value) and value:
            archs = value
        elif isinstance(value, list) and not any(isinstance(v, list) for v in value):
            archs = [value]
        else:
            raise ExperimentError(
                f"{where}: hidden must be a list of widths ([800, 800]) or a list of such lists, "
                f"got {value!r}"
            )
        for arch in archs:
            if not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in arch):
                raise ExperimentError(f"{where}: hidden widths must be integers >= 1, got {arch!r}")
        return [tuple(a) for a in archs]
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ExperimentError(f"{where}: {key} is an empty list; give at least one value")
    return [_normalise(key, v, where) for v in values]


def _build_options(method: str, opts: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate one run's settings through its options class; the dict it round-trips to."""
    opts = {k: v for k, v in opts.items() if k != "method"}
    try:
        if method == "ebp":
            from .runs import TrainOptions

            return TrainOptions.from_dict(opts).to_dict()
        from .baselines import BaselineOptions

        return BaselineOptions.from_dict({"method": method, **opts}).to_dict()
    except (TypeError, ValueError) as exc:
        raise ExperimentError(f"{where}: {exc}") from None


def _expand_grid(
    path: str, index: int, settings: dict[str, Any], grid: dict[str, Any]
) -> list[RunSpec]:
    where = f"grid {index + 1}"
    for key in grid:
        if key not in _ALL_KEYS:
            raise ExperimentError(
                f"{_where(path, where)}: unknown key {key!r}; "
                f"known keys: {', '.join(sorted(_ALL_KEYS))}"
            )
    merged = {**settings, **grid}
    axes_all = {k: _axis(k, v, _where(path, f"{where}, key {k!r}")) for k, v in merged.items()}
    methods = axes_all.pop("method", ["ebp"])
    for method in methods:  # a baseline's weight kind is fixed; a grid may only confirm it
        expected = _BASELINE_WEIGHTS.get(method)
        if expected and "weights" in grid and expected not in axes_all["weights"]:
            raise ExperimentError(
                f"{_where(path, where)}: weights: {method} trains {expected} weights, got "
                f"{grid['weights']!r}"
            )
    for key in grid:  # a key set in this grid must apply to at least one of its methods
        if key not in ("method", "weights") and not any(key in _KEYS[m] for m in methods):
            raise ExperimentError(
                f"{_where(path, where)}: key {key!r} does not apply to method(s) "
                f"{', '.join(methods)}"
            )
    runs = []
    for method in methods:
        # Settings that do not apply to a method (weights for bp, ...) are left out for it.
        axes = {k: v for k, v in axes_all.items() if k in _KEYS[method] and k != "data_dir"}
        names = list(axes)
        varying = [k for k in names if len(axes[k]) > 1]
        for combo in itertools.product(*(axes[k] for k in names)):
            raw = dict(zip(names, combo, strict=True))
            raw.setdefault("hidden", (100,))
            opts = _build_options(method, {"method": method, **raw}, _where(path, where))
            group, name = _run_name(method, opts, varying)
            opts["extra"] = {"group": group, "run": name}
            runs.append(RunSpec(name=name, method=method, options=opts))
    return runs


def parse_experiment(text: str, path: str = "<experiment>", name: str | None = None) -> Experiment:
    """Parse and validate an experiment's TOML text; every run's options are checked.

    Raises
    ------
    ExperimentError
        Naming the file, the grid and the key: TOML syntax, unknown keys, bad values, two
        different runs that would share a directory name.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{path}: invalid TOML: {exc}") from None
    unknown = sorted(set(doc) - _TOP_LEVEL)
    if unknown:
        raise ExperimentError(
            f"{path}: unknown top-level key(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(_TOP_LEVEL))} (run settings go in [settings] or [[grid]])"
        )
    for key in ("name", "description", "out"):
        if key in doc and not isinstance(doc[key], str):
            raise ExperimentError(f"{path}: {key} must be a string, got {doc[key]!r}")
    settings = doc.get("settings", {})
    if not isinstance(settings, dict):
        raise ExperimentError(f"{path}: settings must be a table ([settings])")
    for key in settings:
        if key not in _ALL_KEYS:
            raise ExperimentError(
                f"{path}: settings: unknown key {key!r}; known keys: {', '.join(sorted(_ALL_KEYS))}"
            )
    grids = doc.get("grid", [{}])
    if isinstance(grids, dict):
        grids = [grids]
    if not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
        raise ExperimentError(f"{path}: grid must be a table ([grid]) or tables ([[grid]])")
    data_dir = settings.get("data_dir")
    if data_dir is not None and not isinstance(data_dir, str):
        raise ExperimentError(f"{path}: settings: data_dir must be a string, got {data_dir!r}")
    runs: dict[str, RunSpec] = {}
    for i, grid in enumerate(grids):
        if "data_dir" in grid:
            raise ExperimentError(f"{path}: grid {i + 1}: data_dir belongs in [settings]")
        for run in _expand_grid(path, i, settings, grid):
            seen = runs.get(run.name)
            if seen is not None and seen != run:
                diff = sorted(
                    k
                    for k in set(seen.options) | set(run.options)
                    if seen.options.get(k) != run.options.get(k)
                )
                raise ExperimentError(
                    f"{path}: two different runs would share the directory {run.name!r} "
                    f"(they differ in {', '.join(diff)}); make those keys a list in one grid "
                    "so that they become part of the name, or use separate experiment files"
                )
            runs[run.name] = run
    return Experiment(
        name=doc.get("name") or name or "experiment",
        description=doc.get("description", ""),
        runs=list(runs.values()),
        out=doc.get("out"),
        data_dir=None if data_dir in (None, "none") else data_dir,
        source=text,
    )


def load_experiment(path: str | os.PathLike) -> Experiment:
    """Read and validate an experiment file (see :func:`parse_experiment`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExperimentError(f"{path}: no such experiment file") from None
    return parse_experiment(text, str(path), name=path.stem)


# ---------------------------------------------------------------------------- running
def run_status(run_dir: Path, spec: RunSpec | None = None) -> str:
    """``"done"`` (summary.json, nothing left to train), ``"partial"`` (started) or ``"new"``."""
    summary = run_dir / "summary.json"
    if summary.is_file():
        done = json.loads(summary.read_text(encoding="utf-8"))
        epochs = spec.options["epochs"] if spec is not None else 0
        if done.get("stopped_early") or done.get("epochs_run", 0) >= epochs:
            return "done"
        return "partial"  # epochs were raised since: resume
    if (run_dir / "options.json").is_file():
        return "partial"
    return "new"


@contextlib.contextmanager
def _data_dir_env(data_dir: str | None):
    """Point ``$EBPROP_DATA`` at ``data_dir`` for the run.

    The data folder is machine-specific, so it is not part of a run's options: a run started
    on one machine resumes on another (the checkpoint's checksums guard the data's identity).
    """
    if data_dir is None:
        yield
        return
    old = os.environ.get("EBPROP_DATA")
    os.environ["EBPROP_DATA"] = str(data_dir)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("EBPROP_DATA", None)
        else:
            os.environ["EBPROP_DATA"] = old


def execute_run(
    spec: RunSpec,
    run_dir: str | os.PathLike,
    *,
    data_dir: str | None = None,
    threads: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run (or resume, or skip) one run; never raises for a failing run.

    Parameters
    ----------
    spec : RunSpec
    run_dir : path
        The run's directory (on a filesystem every worker sees).
    data_dir : str, optional
        Dataset folder on this machine (exported as ``$EBPROP_DATA`` during the run).
    threads : int, optional
        Limit BLAS/OpenMP (threadpoolctl) and torch threads to this many; None leaves them.
    progress : bool
        Per-run progress bars.

    Returns
    -------
    dict
        ``name``, ``status`` ("done", "skipped", "stopped" or "failed"), ``seconds``,
        ``error`` (one line, or None) and ``traceback`` (or None).
    """
    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    result: dict[str, Any] = {"name": spec.name, "error": None, "traceback": None}
    try:
        state = run_status(run_dir, spec)
        if state == "done":
            return {**result, "status": "skipped", "seconds": 0.0}
        resume = state == "partial"
        limits: contextlib.AbstractContextManager = contextlib.nullcontext()
        if threads is not None:
            from threadpoolctl import threadpool_limits

            limits = threadpool_limits(threads)
        with limits, _data_dir_env(data_dir):
            if spec.method == "ebp":
                from .runs import TrainOptions, train_run

                summary = train_run(
                    TrainOptions.from_dict(spec.options), run_dir, resume=resume, progress=progress
                )
            else:
                from .baselines import BaselineOptions, train_baseline

                summary = train_baseline(
                    BaselineOptions.from_dict(spec.options),
                    run_dir,
                    resume=resume,
                    progress=progress,
                    threads=threads,
                )
        status = "done" if summary.get("finished") else "stopped"
    except Exception as exc:  # noqa: BLE001 - one failing run must not stop the sweep
        msg = str(exc).splitlines()[0] if str(exc) else ""
        result["error"] = f"{type(exc).__name__}: {msg}"
        result["traceback"] = traceback.format_exc()
        status = "failed"
    return {**result, "status": status, "seconds": time.perf_counter() - t0}


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: per-run outcomes, the table rows and the files written."""

    out_dir: Path
    outcomes: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    files: dict[str, Path]

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Outcomes of the runs that failed."""
        return [o for o in self.outcomes if o["status"] == "failed"]


def _iter_local(
    pending: list[RunSpec], out_dir: Path, jobs: int, data_dir: str | None, threads: int | None
) -> Iterable[dict[str, Any]]:
    if jobs == 1:
        for spec in pending:
            yield execute_run(spec, out_dir / spec.name, data_dir=data_dir, threads=threads)
        return
    from joblib import Parallel, delayed

    # joblib's default backend (loky processes) unless the caller chose another with
    # joblib.parallel_config(backend=...)
    parallel = Parallel(n_jobs=jobs, return_as="generator_unordered")
    yield from parallel(
        delayed(execute_run)(spec, str(out_dir / spec.name), data_dir=data_dir, threads=threads)
        for spec in pending
    )


def _iter_dask(
    pending: list[RunSpec], out_dir: Path, scheduler: Any, data_dir: str | None, threads: int | None
) -> Iterable[dict[str, Any]]:
    try:
        from distributed import Client, as_completed
    except ImportError as exc:
        raise EBPropError("--scheduler needs Dask distributed: pip install 'ebprop[dask]'") from exc
    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        futures = [
            client.submit(
                execute_run,
                spec,
                str(out_dir / spec.name),
                data_dir=data_dir,
                threads=threads,
                key=f"ebprop-run-{spec.name}-{time.time_ns()}",
                pure=False,
            )
            for spec in pending
        ]
        names = {f.key: s.name for f, s in zip(futures, pending, strict=True)}
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # noqa: BLE001 - a lost worker fails one run, not the sweep
                yield {
                    "name": names[future.key],
                    "status": "failed",
                    "seconds": 0.0,
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": None,
                }
    finally:
        if client is not scheduler:
            client.close()


def run_sweep(
    experiment: Experiment,
    out_dir: str | os.PathLike,
    *,
    jobs: int = 1,
    scheduler: Any = None,
    data_dir: str | None = None,
    threads: int | None = None,
    progress: bool = True,
    on_outcome: Callable[[dict[str, Any]], None] | None = None,
) -> SweepResult:
    """Run every unfinished run of ``experiment`` and write the results table and plot.

    Parameters
    ----------
    experiment : Experiment
    out_dir : path
        Sweep folder; each run gets ``out_dir/<run name>``.
    jobs : int
        Local worker processes (joblib, loky backend). Ignored with ``scheduler``.
    scheduler : str or distributed.Client, optional
        A Dask scheduler address (``tcp://host:8786``) or a connected client: one task per run.
    data_dir : str, optional
        Dataset folder as the workers see it (default: the file's ``data_dir``, else
        ``$EBPROP_DATA`` / the cache).
    threads : int, optional
        BLAS/torch threads per run; default 1 when runs share a machine (``jobs > 1`` or a
        scheduler), unlimited otherwise.
    progress : bool
        A tqdm bar over runs.
    on_outcome : callable, optional
        Called with each run's outcome (see :func:`execute_run`) as it arrives.

    Returns
    -------
    SweepResult
    """
    from tqdm.auto import tqdm

    from .persist import atomic_write_text

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir if data_dir is not None else experiment.data_dir
    if threads is None and (jobs > 1 or scheduler is not None):
        threads = 1
    atomic_write_text(out_dir / "experiment.toml", experiment.source)
    atomic_write_text(
        out_dir / "runs.json",
        json.dumps(
            [{"name": r.name, "method": r.method, "options": r.options} for r in experiment.runs],
            indent=2,
        )
        + "\n",
    )
    outcomes = [
        {"name": r.name, "status": "skipped", "seconds": 0.0, "error": None, "traceback": None}
        for r in experiment.runs
        if run_status(out_dir / r.name, r) == "done"
    ]
    done = {o["name"] for o in outcomes}
    pending = [r for r in experiment.runs if r.name not in done]
    if scheduler is not None:
        stream = _iter_dask(pending, out_dir, scheduler, data_dir, threads)
    else:
        stream = _iter_local(pending, out_dir, jobs, data_dir, threads)
    with tqdm(total=len(pending), desc=experiment.name, unit="run", disable=not progress) as bar:
        for outcome in stream:
            outcomes.append(outcome)
            bar.update(1)
            if outcome["status"] == "failed":
                bar.write(f"run {outcome['name']} failed: {outcome['error']}")
            if on_outcome is not None:
                on_outcome(outcome)
    summaries = []
    for run in experiment.runs:
        path = out_dir / run.name / "summary.json"
        if path.is_file():
            summaries.append(json.loads(path.read_text(encoding="utf-8")))
    rows = aggregate(summaries)
    files = write_results(rows, out_dir, title=experiment.name)
    return SweepResult(out_dir=out_dir, outcomes=outcomes, rows=rows, files=files)


# ---------------------------------------------------------------------------- results table
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
    return _run_name(method, opts, ())[0]


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
        weights = opts.get("weights") or _BASELINE_WEIGHTS.get(method, "real")
        for readout in _readouts(first):
            tests = [_readouts(s)[readout]["test_error"] for s in members]
            rows.append(
                {
                    "group": group,
                    "method": method,
                    "readout": readout,
                    "weights": weights,
                    "hidden": "x".join(str(h) for h in opts["hidden"]) or "none",
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


def _csv_text(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r[k] is None else r[k]) for k in COLUMNS})
    return buf.getvalue()


def plot_results(rows: Sequence[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Test error (%) against the number of weights, one series per method, weights and readout.

    Error bars are the std over seeds. Written atomically as PNG (matplotlib's Agg backend).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter

    from .persist import atomic_write_bytes

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
    from .persist import atomic_write_text

    out_dir = Path(out_dir)
    files = {
        "csv": out_dir / "results.csv",
        "md": out_dir / "results.md",
        "png": out_dir / "results.png",
    }
    atomic_write_text(files["csv"], _csv_text(rows))
    atomic_write_text(files["md"], results_markdown(rows, title))
    plot_results(rows, files["png"])
    return files
