"""Running a sweep: every unfinished run of an experiment, one after the other, through joblib
processes (``jobs > 1``) or on a Dask distributed scheduler (``scheduler=ADDRESS``; run
directories must then be on a filesystem the workers share).

A run whose folder says "done" is skipped, one that was started is resumed; a folder holding a
run with other settings (say an earlier ``batch_size``) is never taken for this run: it fails,
naming the settings that differ. Then the results table and plot are written.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exceptions import DivergenceWarning, EBPropError
from ..fileio import atomic_write_text, write_json
from ..runs.folder import RunFolder
from ..runs.method import METHODS as EBP_METHODS
from ..runs.method import TrainingMethod
from .experiment import Experiment, RunSpec
from .results import aggregate, write_results

__all__ = ["SweepResult", "execute_run", "run_status", "run_sweep", "select_runs"]

#: Seconds between a worker's checks that its sweep is still there.
_WATCH_SECONDS = 0.5


def run_status(run_dir: str | os.PathLike, spec: RunSpec) -> str:
    """``"done"`` (nothing left to train), ``"partial"`` (to resume), ``"new"``, or
    ``"conflict"``: the folder holds a run with other settings than ``spec`` (it is neither
    counted as done nor resumed; :func:`execute_run` reports it as failed, saying what to do).
    """
    try:
        return RunFolder(run_dir).status(spec.options if spec.parsed is None else spec.parsed)
    except ValueError:
        return "conflict"


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


@contextlib.contextmanager
def _divergence_to(result: dict[str, Any]):
    """Record the first :class:`DivergenceWarning` of a run as ``result["warning"]`` (a worker
    process's warnings would otherwise go to its stderr, unseen); others pass through as they
    come (nothing is accumulated)."""
    with warnings.catch_warnings():
        passthrough = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None) -> None:
            if issubclass(category, DivergenceWarning):
                result.setdefault("warning", str(message))
            else:
                passthrough(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        warnings.simplefilter("always", DivergenceWarning)
        yield


def _sweep_alive(parent_pid: int | None, dask_task: bool) -> Callable[[], bool] | None:
    """A check that the sweep which started this run still wants it, or None in its own process.

    A local worker (``parent_pid`` is the sweep's process) is orphaned when that process is gone:
    the worker is re-parented at once, even before the dead parent is reaped. A Dask task is
    orphaned when the scheduler has released its key (its client disconnected or cancelled it).
    """
    if parent_pid is not None and parent_pid != os.getpid():
        if os.getppid() == parent_pid:
            return lambda: os.getppid() == parent_pid

        def exists() -> bool:
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True

        return exists
    if dask_task:
        try:
            from distributed import get_worker

            worker = get_worker()
            key = worker.get_current_task()
        except (ImportError, ValueError):
            return None

        def wanted() -> bool:
            task = worker.state.tasks.get(key)
            return task is not None and task.state not in ("cancelled", "released", "forgotten")

        return wanted
    return None


@contextlib.contextmanager
def _orphan_guard(alive: Callable[[], bool] | None, stop: threading.Event, local: bool):
    """Stop the run when the sweep that started it is gone (issue 11, item 8).

    The run stops at its next minibatch boundary after writing a checkpoint (so nothing is lost
    and the sweep resumes it); a local worker process then ends, since nobody will collect its
    result (after 10 s at most, even if the run does not stop).
    """
    if alive is None:
        yield
        return
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(_WATCH_SECONDS):
            if not alive():
                stop.set()
                if local:
                    finished.wait(10.0)
                    os.kill(os.getpid(), signal.SIGKILL)  # the checkpoint is written
                return

    threading.Thread(target=watch, name="ebprop-orphan-guard", daemon=True).start()
    try:
        yield
    finally:
        finished.set()


def execute_run(
    spec: RunSpec,
    run_dir: str | os.PathLike,
    *,
    training: TrainingMethod | None = None,
    data_dir: str | None = None,
    threads: int | None = None,
    progress: bool = False,
    parent_pid: int | None = None,
    dask_task: bool = False,
) -> dict[str, Any]:
    """Run (or resume, or skip) one run; never raises for a failing run.

    Parameters
    ----------
    spec : RunSpec
    run_dir : path
        The run's directory (on a filesystem every worker sees).
    training : TrainingMethod, optional
        The method that trains it (its experiment's ``methods[spec.method]``); default: EBP's,
        :data:`ebprop.runs.METHODS`.
    data_dir : str, optional
        Dataset folder on this machine (exported as ``$EBPROP_DATA`` during the run).
    threads : int, optional
        Limit BLAS/OpenMP (threadpoolctl) and torch threads to this many; None leaves them.
    progress : bool
        Per-run progress bars.
    parent_pid : int, optional
        The sweep's process. In another process (a joblib worker), the run stops (checkpoint
        written) and the worker exits when that process is gone: no orphan keeps training.
    dask_task : bool
        Running as a Dask task: the run stops when the scheduler releases the task (its client
        is gone).

    Returns
    -------
    dict
        ``name``, ``status`` ("done", "skipped", "stopped" or "failed"), ``seconds``,
        ``error`` (one line, or None), ``traceback`` (or None) and ``warning`` (the first
        divergence warning, or None).
    """
    run_dir = Path(run_dir)
    t0 = time.perf_counter()
    result: dict[str, Any] = {"name": spec.name, "error": None, "traceback": None}
    warned: dict[str, Any] = {}
    try:
        if training is None:
            if spec.method not in EBP_METHODS:
                raise ValueError(f"no training method {spec.method!r} given; pass training=")
            training = EBP_METHODS[spec.method]
        options = spec.settings(training)
        state = RunFolder(run_dir).status(options)  # ValueError: other settings there
        if state == "done":
            return {**result, "status": "skipped", "seconds": 0.0}
        resume = state == "partial"
        limits: contextlib.AbstractContextManager = contextlib.nullcontext()
        if threads is not None:
            from threadpoolctl import threadpool_limits

            limits = threadpool_limits(threads)
        stop = threading.Event()
        guard = _orphan_guard(_sweep_alive(parent_pid, dask_task), stop, local=not dask_task)
        with limits, _data_dir_env(data_dir), _divergence_to(warned), guard:
            kwargs = {"threads": threads} if training.takes_threads else {}
            summary = training.train(
                options,
                run_dir,
                resume=resume,
                progress=progress,
                stop_event=stop,
                **kwargs,
            )
        status = "done" if summary.get("finished") else "stopped"
    except Exception as exc:  # noqa: BLE001 - one failing run must not stop the sweep
        msg = str(exc).splitlines()[0] if str(exc) else ""
        result["error"] = f"{type(exc).__name__}: {msg}"
        result["traceback"] = traceback.format_exc()
        status = "failed"
    return {
        **result,
        "status": status,
        "seconds": time.perf_counter() - t0,
        "warning": warned.get("warning"),
    }


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
    pending: list[RunSpec],
    methods: dict[str, TrainingMethod],
    out_dir: Path,
    jobs: int,
    data_dir: str | None,
    threads: int | None,
) -> Iterable[dict[str, Any]]:
    if jobs == 1:
        for spec in pending:
            yield execute_run(
                spec,
                out_dir / spec.name,
                training=methods[spec.method],
                data_dir=data_dir,
                threads=threads,
            )
        return
    from joblib import Parallel, delayed

    # joblib's default backend (loky processes) unless the caller chose another with
    # joblib.parallel_config(backend=...)
    parallel = Parallel(n_jobs=jobs, return_as="generator_unordered")
    yield from parallel(
        delayed(execute_run)(
            spec,
            str(out_dir / spec.name),
            training=methods[spec.method],
            data_dir=data_dir,
            threads=threads,
            parent_pid=os.getpid(),  # a worker whose sweep is killed stops, then exits
        )
        for spec in pending
    )


def _iter_dask(
    pending: list[RunSpec],
    methods: dict[str, TrainingMethod],
    out_dir: Path,
    scheduler: Any,
    data_dir: str | None,
    threads: int | None,
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
                training=methods[spec.method],
                data_dir=data_dir,
                threads=threads,
                dask_task=True,
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


def select_runs(experiment: Experiment, only: str | None) -> list[RunSpec]:
    """The runs of ``experiment`` whose names match the glob ``only`` (``fnmatch``, case
    sensitive; ``*-s2`` is every seed-2 run); all of them for None.

    Raises
    ------
    ValueError
        ``only`` matches none of the runs.
    """
    if only is None:
        return list(experiment.runs)
    chosen = [r for r in experiment.runs if fnmatch.fnmatchcase(r.name, only)]
    if not chosen:
        raise ValueError(
            f"the glob {only!r} matches none of the {len(experiment.runs)} run names of "
            f"{experiment.name!r}; `ebprop sweep FILE --dry-run` lists them"
        )
    return chosen


def run_sweep(
    experiment: Experiment,
    out_dir: str | os.PathLike,
    *,
    only: str | None = None,
    jobs: int = 1,
    scheduler: Any = None,
    data_dir: str | None = None,
    threads: int | None = None,
    progress: bool = True,
    on_outcome: Callable[[dict[str, Any]], None] | None = None,
) -> SweepResult:
    """Run every unfinished run of ``experiment`` and write the results table and plot.

    Each run is trained by its method in ``experiment.methods`` (what the experiment was parsed
    with).

    Parameters
    ----------
    experiment : Experiment
    out_dir : path
        Sweep folder; each run gets ``out_dir/<run name>``.
    only : str, optional
        Train only the runs whose names match this glob (:func:`select_runs`), say one seed's
        (``"*-s2"``); the results table still holds every finished run of the experiment.
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

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    selected = {r.name for r in select_runs(experiment, only)}  # before anything is written
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = data_dir if data_dir is not None else experiment.data_dir
    if threads is None and (jobs > 1 or scheduler is not None):
        threads = 1
    atomic_write_text(out_dir / "experiment.toml", experiment.source)
    write_json(
        out_dir / "runs.json",
        [{"name": r.name, "method": r.method, "options": r.options} for r in experiment.runs],
    )
    outcomes = [
        {"name": r.name, "status": "skipped", "seconds": 0.0, "error": None, "traceback": None}
        for r in experiment.runs
        if run_status(out_dir / r.name, r) == "done"
    ]
    done = {o["name"] for o in outcomes}
    pending = [r for r in experiment.runs if r.name in selected and r.name not in done]
    if scheduler is not None:
        stream = _iter_dask(pending, experiment.methods, out_dir, scheduler, data_dir, threads)
    else:
        stream = _iter_local(pending, experiment.methods, out_dir, jobs, data_dir, threads)
    with tqdm(total=len(pending), desc=experiment.name, unit="run", disable=not progress) as bar:
        for outcome in stream:
            outcomes.append(outcome)
            bar.update(1)
            if outcome["status"] == "failed":
                bar.write(f"run {outcome['name']} failed: {outcome['error']}")
            if outcome.get("warning"):  # raised again here: a worker's warnings are not seen
                warnings.warn(
                    f"run {outcome['name']}: {outcome['warning']}", DivergenceWarning, stacklevel=2
                )
            if on_outcome is not None:
                on_outcome(outcome)
    summaries = []
    for run in experiment.runs:
        if run_status(out_dir / run.name, run) == "done":  # "conflict" for a corrupt summary
            summaries.append(RunFolder(out_dir / run.name).read_summary())
    rows = aggregate(summaries)
    files = write_results(rows, out_dir, title=experiment.name)
    return SweepResult(out_dir=out_dir, outcomes=outcomes, rows=rows, files=files)
