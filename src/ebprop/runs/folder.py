"""The run-folder protocol every training method follows (EBP and the baselines).

============== ===============================================================================
options.json   the run's options (written once they, and the data, have been checked)
checkpoint.npz the method's state: plain arrays plus a JSON header (never pickle)
metrics.jsonl  one JSON record per finished epoch
summary.json   written last, only when the run has finished (a sweep's "done" marker); one
               schema for every method (:func:`summary_record`)
.ebprop.lock   the advisory lock (``fcntl.flock``) a training holds; it names its PID
============== ===============================================================================

A run folder is claimed (:meth:`RunFolder.claim`) before anything is written: ``--out ""``, a
file, and a non-empty folder that holds no run are refused, and a second process into a folder
in use gets :class:`RunFolderBusyError`. The lock dies with its process, even by ``kill -9``.

The rules written once here: when a folder may be started or resumed (only ``epochs`` may differ
from the stored options), which epoch is best (lowest validation error, the earliest on ties; the
last without a validation split), and when patience runs out. Every file is written atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import DataError, EBPropError, ModelFormatError
from ..fileio import (
    atomic_savez,
    decode_header,
    encode_header,
    read_json,
    read_jsonl,
    read_npz,
    write_json,
    write_jsonl,
)
from ..params import option_params
from ..provenance import provenance
from .options import DataOptions, RunOptions

__all__ = [
    "LOCK_NAME",
    "RunFolder",
    "RunFolderBusyError",
    "best_record",
    "differing_options",
    "patience_exhausted",
    "summary_record",
]


#: Options that may change when a run is resumed: more epochs; another minibatch loop (the
#: fused kernels and the NumPy loop agree to round-off, not bit for bit).
RESUMABLE_CHANGES = frozenset({"epochs", "jobs", "max_memory"})


def _values(options: RunOptions) -> dict[str, Any]:
    """The fields of ``options`` as it holds them (parsed), for :func:`differing_options`."""
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


def differing_options(mine: dict[str, Any], stored: dict[str, Any]) -> list[str]:
    """Keys whose values differ between two options dicts, :data:`RESUMABLE_CHANGES` aside.

    The values may be stored forms (``options.json``) or parsed ones (an options object's
    fields); declared parameters are compared in their stored form."""
    keys = set(mine) | set(stored)

    declared = option_params()

    def value(d: dict[str, Any], k: str) -> Any:  # options added later: absent means default
        if k == "hidden" and d.get("architecture") is not None:
            return None  # the architecture's layers (stored as [100], the default, before)
        v = d[k] if k in d else ADDED_DEFAULTS.get(k, getattr(declared.get(k), "default", None))
        if k in declared:  # compare parsed values: "auto" and the schedule it stands for agree
            try:
                return declared[k].to_json(declared[k].check(v))
            except ValueError:
                return v
        return list(v) if isinstance(v, tuple) else v  # image_size: a tuple, stored as a list

    def same(k: str) -> bool:  # a declaration may say more ("auto" asks for what it became)
        a, b = value(mine, k), value(stored, k)
        return a == b or (k in declared and declared[k].same(a, b))

    return sorted(k for k in keys if k not in RESUMABLE_CHANGES and not same(k))


#: Options added after runs were stored (issues 10 and 15; then augment_shift); a stored
#: run without them used these. A declared estimator parameter (:mod:`ebprop.params`) absent
#: from a stored run means its declared default, without an entry here.
ADDED_DEFAULTS: dict[str, Any] = {
    f.name: f.default
    for f in dataclasses.fields(DataOptions)
    if f.name in ("test_fraction", "test_seed", "image_size", "resize", "color", "input_gain")
} | {
    "refit_thresholds": False,
    "augment_shift": 0,
    "background": "white",
}


LOCK_NAME = ".ebprop.lock"


class RunFolderBusyError(EBPropError, OSError):
    """Another process holds the run folder's lock (it is training into it)."""


class RunFolder:
    """A run directory: its files and the checks before starting, resuming or skipping it."""

    def __init__(self, path: str | Path) -> None:
        if str(path) == "":
            raise ValueError("--out is empty; name a folder for the run (e.g. --out runs/first)")
        self.path = Path(path)
        self.options_path = self.path / "options.json"
        self.checkpoint_path = self.path / "checkpoint.npz"
        self.metrics_path = self.path / "metrics.jsonl"
        self.summary_path = self.path / "summary.json"

    def holds_run(self) -> bool:
        """True once a run was started here (options or a checkpoint exist)."""
        return self.options_path.exists() or self.checkpoint_path.exists()

    def check_target(self) -> None:
        """Refuse a path that is a file, or a non-empty folder holding no run; writes nothing.

        Raises
        ------
        FileExistsError
            Naming the path, what is there and the fix.
        """
        if self.path.exists() and not self.path.is_dir():
            raise FileExistsError(f"{self.path}: is a file, not a run folder; choose another --out")
        if not self.path.is_dir() or self.holds_run():
            return
        entries = sorted(p.name for p in self.path.iterdir() if p.name != LOCK_NAME)
        if entries:
            shown = ", ".join(entries[:3]) + (", …" if len(entries) > 3 else "")
            raise FileExistsError(
                f"{self.path}: not empty ({shown}) and not an ebprop run (no options.json); "
                "its files are left alone: choose an empty or new --out"
            )

    @contextlib.contextmanager
    def claim(self) -> Iterator[None]:
        """Hold the folder's advisory lock while the block runs (:meth:`check_target` first).

        The folder is created if missing, and removed again when the block leaves nothing in
        it. The lock is ``fcntl.flock`` on ``.ebprop.lock``, which records the holder's PID; the
        operating system releases it when the process ends, even by ``kill -9``.

        Raises
        ------
        RunFolderBusyError
            When another process holds the lock: one line naming the folder and its PID.
        """
        import fcntl  # POSIX only; imported here so that reading runs works anywhere

        self.check_target()
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / LOCK_NAME
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                raise RunFolderBusyError(
                    f"{self.path}: in use by PID {pid} (another ebprop is training into it); "
                    "wait for it to end, or choose another --out"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            try:
                yield
            finally:
                if created and [p.name for p in self.path.iterdir()] == [LOCK_NAME]:
                    lock.unlink(missing_ok=True)  # nothing was written: leave no trace
                    with contextlib.suppress(OSError):
                        self.path.rmdir()
        finally:
            os.close(fd)  # releases the lock

    def read_options(self, cls: type[RunOptions]) -> RunOptions:
        """The stored options, through ``cls`` (so they are validated and normalised)."""
        if not self.options_path.is_file():
            raise FileNotFoundError(
                f"{self.options_path}: no such file; {self.path} is not a run directory"
            )
        stored = self._read_object(self.options_path)
        try:
            return cls.from_dict(stored)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{self.options_path}: {exc}") from exc

    @staticmethod
    def _read_object(path: Path) -> dict:
        """A JSON file that must hold an object; DataError names the file otherwise."""
        content = read_json(path)
        if not isinstance(content, dict):
            raise DataError(f"{path}: expected a JSON object, got {type(content).__name__}")
        return content

    def read_summary(self) -> dict | None:
        """``summary.json``, or None when the run has not finished."""
        return self._read_object(self.summary_path) if self.summary_path.is_file() else None

    def status(self, options: RunOptions | dict[str, Any]) -> str:
        """``"done"``, ``"partial"`` (started, or finished with fewer epochs) or ``"new"``.

        ``options``: the run's options object (its parsed values are compared as they are) or
        their stored form (``to_dict()``).

        Raises
        ------
        ValueError
            When the folder holds a run with other options than ``options`` (``epochs`` aside):
            it must not be counted as done, nor resumed.
        """
        if not self.options_path.is_file():
            return "partial" if self.checkpoint_path.exists() else "new"
        stored = self._read_object(self.options_path)
        mine = options if isinstance(options, dict) else _values(options)
        differ = differing_options(mine, stored)
        if differ:
            raise ValueError(
                f"{self.path} holds a run with other options {differ} than this one; delete "
                "that folder or write to another one"
            )
        done = self.read_summary()
        if done is not None and (
            done.get("stopped_early") or done.get("epochs_run", 0) >= mine["epochs"]
        ):
            return "done"
        return "partial"

    def check_start(
        self, options: RunOptions | None, cls: type[RunOptions], resume: bool
    ) -> tuple[RunOptions, dict | None]:
        """Check that a run may start (or resume) here; nothing is written.

        Returns
        -------
        (options, summary) : the options to train with (the stored ones when ``options`` is
        None) and, when the run has nothing left to do, its summary (else None).

        Raises
        ------
        FileExistsError
            Starting where a run exists. ValueError: resuming with other options than the
            stored ones (only ``epochs`` may change), or starting without options.
        FileNotFoundError
            Resuming where no run exists.
        """
        if not resume:
            if options is None:
                raise ValueError("options are required unless resuming")
            self.check_target()
            if self.holds_run():
                raise FileExistsError(
                    f"{self.path} already holds a run; resume it (ebprop train --resume "
                    f"{self.path}) or choose another --out"
                )
            return options, None
        stored = self.read_options(cls)
        if options is None:
            options = stored
        # compare the parsed values the options hold (a schedule is not parsed again)
        differ = differing_options(_values(options), _values(stored))
        if differ:
            raise ValueError(
                f"{self.path}: options {differ} differ from the run's options.json; resume with "
                "the run's options (only epochs may change)"
            )
        if getattr(options, "reinforcement", None) is not None:  # "auto": what the run resolved
            options = dataclasses.replace(options, reinforcement=stored.reinforcement)
        done = self.read_summary()
        if done is not None and (
            done.get("epochs_run", 0) >= options.epochs or done.get("stopped_early")
        ):
            return options, done
        return options, None

    def begin(self, options: RunOptions) -> None:
        """Create the folder and write ``options.json``; ``summary.json`` goes (not done yet)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.options_path, options.to_dict())
        self.summary_path.unlink(missing_ok=True)

    def discard_unstarted(self) -> None:
        """Remove what :meth:`begin` wrote for a run that never reached a checkpoint (it failed
        in its first epoch), so that the corrected command may start in the same folder."""
        if not self.checkpoint_path.exists():
            for path in (self.options_path, self.metrics_path, self.summary_path):
                path.unlink(missing_ok=True)

    def write_metrics(self, history: Sequence[dict]) -> None:
        """The whole ``metrics.jsonl``, atomically."""
        write_jsonl(self.metrics_path, list(history))

    def read_metrics(self) -> list[dict]:
        """Records of ``metrics.jsonl`` ([] when absent)."""
        return read_jsonl(self.metrics_path)

    def write_summary(self, summary: dict) -> None:
        """``summary.json`` (the last file a finished run writes)."""
        write_json(self.summary_path, summary)

    def save_checkpoint(self, header: dict, arrays: dict[str, np.ndarray], key: str) -> None:
        """``checkpoint.npz``: ``arrays`` plus ``header`` JSON-encoded under ``key``."""
        atomic_savez(self.checkpoint_path, **arrays, **{key: encode_header(header)})

    def read_checkpoint(self, key: str) -> tuple[dict, dict[str, np.ndarray]]:
        """(header, arrays) of ``checkpoint.npz``; ModelFormatError names the file."""
        src = str(self.checkpoint_path)
        try:
            arrays = read_npz(
                self.checkpoint_path, what="checkpoint"
            )  # sizes checked before allocating
        except ModelFormatError:
            raise
        except Exception as exc:  # noqa: BLE001 - any read failure means an unusable checkpoint
            raise ModelFormatError(f"{src}: unreadable checkpoint ({exc})") from exc
        if key not in arrays:
            raise ModelFormatError(f"{src}: not an ebprop checkpoint (no {key})")
        return decode_header(arrays.pop(key), src), arrays


def best_record(history: Sequence[dict], key: str) -> dict | None:
    """The epoch with the lowest ``key`` (validation error), the earliest on ties.

    Without a validation split (``key`` None) the last epoch is the best; None for no epochs.
    """
    scored = [r for r in history if r.get(key) is not None]
    if not scored:
        return history[-1] if history else None
    return min(scored, key=lambda r: (r[key], r["epoch"]))


def patience_exhausted(history: Sequence[dict], key: str, patience: int | None) -> bool:
    """True when ``patience`` epochs have passed without a better ``key`` than the best one."""
    best = best_record(history, key)
    return (
        patience is not None
        and best is not None
        and history[-1]["epoch"] - best["epoch"] >= patience
    )


def summary_record(
    method: str,
    options: RunOptions,
    history: Sequence[dict],
    best: dict | None,
    readouts: dict[str, dict[str, float | None]],
    stopped_early: bool,
    finished: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """The summary of a run, one schema for every method.

    Keys: ``finished``, ``method``, ``ebprop_version``, ``git_commit``, ``vector_bits``
    (:func:`ebprop.provenance.provenance`), ``options``, ``best_epoch``,
    ``epochs_run``, ``stopped_early``, ``readouts`` ({readout: {"val_error", "test_error"}} at the
    best epoch), ``seconds_per_epoch_mean``, ``seconds_total``, then the method's ``extra`` keys.
    Non-finite numbers become None (strict JSON).
    """
    seconds = [r["seconds"] for r in history]
    summary = {
        "finished": finished,
        "method": method,
        **provenance(),
        "options": options.to_dict(),
        "best_epoch": best and best["epoch"],
        "epochs_run": len(history),
        "stopped_early": stopped_early,
        "readouts": readouts,
        "seconds_per_epoch_mean": float(np.mean(seconds)) if seconds else None,
        "seconds_total": float(np.sum(seconds)),
        **extra,
    }
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in summary.items()
    }
