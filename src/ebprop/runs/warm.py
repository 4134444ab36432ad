"""Warm starts: a new run that continues from a finished run's last checkpoint.

:func:`warm_start` copies a finished run (its checkpoint, history and best models so far) into a
new folder under changed options; :func:`ebprop.runs.train_run` with ``resume=True`` then trains
it on. The typical use trains a plain phase once and branches it into several reinforcement
schedules that begin at or after the epoch it reached: since a schedule multiplies nothing
before its ``start`` (and draws no random numbers), the branch is exactly the run that would have
trained with that schedule from the beginning (tested).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..core.reinforce import Reinforcement
from .folder import RunFolder
from .options import TrainOptions

__all__ = ["WARM_START_CHANGES", "warm_start"]

#: Options a warm start may change: more epochs, the reinforcement schedule (from the epoch
#: reached on), the early-stopping patience and the minibatch loop's threads.
WARM_START_CHANGES = frozenset({"epochs", "reinforcement", "patience", "jobs"})
# The run's files that a continuation needs; summary.json and the figures are written anew.
_CARRIED = (
    "checkpoint.npz",
    "metrics.jsonl",
    "model.npz",
    "model_p.npz",
    "model_d.npz",
    "last.npz",
)


def _begun(sched: Reinforcement | None, epochs: int) -> bool:
    """True when the (parsed) schedule multiplied anything in the first ``epochs`` epochs."""
    return sched is not None and sched.start < epochs


def warm_start(source: str | Path, out_dir: str | Path, changes: dict[str, Any]) -> TrainOptions:
    """Set up ``out_dir`` as a continuation of the finished run ``source``.

    Parameters
    ----------
    source : path
        A finished EBP run folder (``summary.json`` and ``checkpoint.npz`` present).
    out_dir : path
        The new run's folder; must not hold a run.
    changes : dict
        New values of options in :data:`WARM_START_CHANGES`; ``epochs`` must exceed the epochs
        ``source`` has run. A changed ``reinforcement`` must not begin before that epoch, and
        ``source``'s schedule must not have begun.

    Returns
    -------
    TrainOptions
        The new run's options (written to its ``options.json``, with ``extra["warm_start"] =
        {"run", "epoch"}``). Resume it with ``train_run(None, out_dir, resume=True)``.

    Raises
    ------
    ValueError
        A change outside :data:`WARM_START_CHANGES`, too few epochs, or a schedule that would
        rewrite epochs already trained. FileNotFoundError: ``source`` has not finished.
        FileExistsError: ``out_dir`` holds a run.
    """
    src, dst = RunFolder(source), RunFolder(out_dir)
    not_allowed = sorted(set(changes) - WARM_START_CHANGES)
    if not_allowed:
        raise ValueError(
            f"a warm start keeps the run's options; it may change only "
            f"{', '.join(sorted(WARM_START_CHANGES))}, not {', '.join(not_allowed)}"
        )
    options = src.read_options(TrainOptions)
    summary = src.read_summary()
    if summary is None or not src.checkpoint_path.is_file():
        raise FileNotFoundError(
            f"{src.path}: not a finished run (no summary.json or checkpoint.npz); finish it "
            f"first (ebprop train --resume {src.path})"
        )
    done = len(src.read_metrics())
    dst.check_target()  # not a file, nor a foreign non-empty folder
    if dst.holds_run():
        raise FileExistsError(f"{dst.path} already holds a run; choose another --out")
    new = TrainOptions.from_dict(options.to_dict() | changes)  # validates the changed values
    if new.epochs <= done:
        raise ValueError(
            f"epochs must exceed the {done} epochs {src.path} has run, got {new.epochs}"
        )
    if new.reinforcement != options.reinforcement and (
        _begun(options.reinforcement, done) or _begun(new.reinforcement, done)
    ):
        raise ValueError(
            f"reinforcement {new.to_dict()['reinforcement']!r} would change epochs {src.path} has "
            "already run "
            f"({done}): a new schedule must start at or after epoch {done}, and the run's own "
            f"({options.to_dict()['reinforcement']!r}) must not have begun"
        )
    new.extra = {**new.extra, "warm_start": {"run": str(src.path.resolve()), "epoch": done}}
    dst.path.mkdir(parents=True, exist_ok=True)
    for name in _CARRIED:
        if (src.path / name).is_file():
            shutil.copy2(src.path / name, dst.path / name)
    dst.begin(new)
    return new
