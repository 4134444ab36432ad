"""``ebprop train``: parse the options, call :func:`ebprop.runs.train_run`, print the epochs."""

from __future__ import annotations

import dataclasses
import faulthandler
import functools
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..baselines.options import BaselineOptions
from ..datasets import DATASETS, is_dataset_path, parse_image_size
from ..runs import (
    WARM_START_CHANGES,
    TrainOptions,
    load_options,
    option_keys,
    train_run,
    warm_start,
)
from ..runs.folder import RESUMABLE_CHANGES
from .app import pct
from .baselines import METHOD_CHOICES, baseline_only_fields, stored_method, train_baseline_run

__all__ = ["train"]

_HIDDEN_TOKEN = re.compile(r"^[0-9][0-9,]*$")


class _TrainCommand(click.Command):
    """Lets ``--hidden`` take several widths: ``--hidden 800 800`` (also ``800,800``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(args):
            tok = args[i]
            if tok == "--hidden":
                widths = []
                i += 1
                while i < len(args) and (_HIDDEN_TOKEN.match(args[i]) or args[i] == "none"):
                    widths.append(args[i])
                    i += 1
                out.append(f"--hidden={','.join(widths)}")
                continue
            out.append(tok)
            i += 1
        return super().parse_args(ctx, out)


def _jobs_value(ctx, param, value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a whole number nor auto") from None


def _parse_hidden(ctx, param, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    if value in ("", "none"):
        return ()
    try:
        widths = tuple(int(v) for v in value.split(",") if v)
    except ValueError:
        widths = ()
    if not widths:  # not integers at all; the widths' range is the declaration's to check
        raise click.BadParameter(f"{value!r}: give layer widths, e.g. --hidden 800 800")
    return widths


def _parse_validation(ctx, param, value: str | None) -> int | float | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give a count (5000) or a fraction (0.1)") from None


def _parse_image_size(ctx, param, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        return parse_image_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def show_progress(quiet: bool) -> bool:
    """Progress bars only on a terminal: not when quiet, nor when stderr goes to a file or pipe."""
    return not quiet and sys.stderr.isatty()


def _epoch_line(r: dict, epochs: int) -> str:
    speed = f"{r['samples_per_s']:,.0f} img/s" if r.get("samples_per_s") else ""
    return (
        f"epoch {r['epoch']:>3}/{epochs}  train {pct(r['train_error'])}  "
        f"val P {pct(r['val_error_p'])} D {pct(r['val_error_d'])}  "
        f"test P {pct(r['test_error_p'])} D {pct(r['test_error_d'])}  "
        f"{r['seconds']:.2f} s  {speed}"
    )


#: Seconds a training may take to stop after SIGTERM/SIGINT before it is ended regardless (the
#: checkpoint already written stays: every file is replaced atomically).
STOP_GRACE_S = 20


@functools.cache
def _devnull():
    """/dev/null, opened once and kept open: the watchdog writes its traceback there."""
    return open(os.devnull, "w")  # noqa: SIM115


def _not_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """A folder option as a Path; an empty one is refused (it would mean the current folder)."""
    if value is None:
        return None
    if not value.strip():
        raise click.BadParameter("an empty path; name a folder (e.g. runs/first)", param=param)
    return Path(value)


def _default_out(dataset: str) -> Path:
    label = Path(dataset).stem if is_dataset_path(dataset) else dataset
    base = Path("runs") / f"{label}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, k = base, 1
    while out.exists():
        k += 1
        out = base.with_name(f"{base.name}-{k}")
    return out


# The command's options that are training options: every field of TrainOptions but ``extra``.
_TRAIN_FIELDS = sorted(option_keys(TrainOptions))

#: CLI-only settings of some fields: how a value given as text is parsed, other flag names, a
#: help text that names what only the command line knows. Everything else about an option (its
#: name, type, help, default, choices) comes from the field (:mod:`ebprop.runs.options`).
_FIELD_EXTRAS: dict[str, dict[str, Any]] = {
    "jobs": {"callback": _jobs_value},
    "dataset": {
        "help": f"{', '.join(DATASETS)}, or a path: a folder of images (one subfolder per "
        "class) or an .npz (X_train, y_train[, X_test, y_test]).",
    },
    "data_dir": {"type": click.Path(file_okay=False)},
    "hidden": {"callback": _parse_hidden},
    "validation": {"callback": _parse_validation},
    "image_size": {"callback": _parse_image_size},
    "resize": {
        "decls": ("--resize/--no-resize",),
        "default": False,
        "callback": lambda ctx, param, v: "resize" if v else None,
    },
    "architecture": {"decls": ("--architecture", "--arch")},
}


def _default_text(value: Any) -> str | None:
    if value is None or value is False:
        return None
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return str(value)


def _click_type(f: dataclasses.Field) -> Any:
    """The click type of a field: its choices, else the first type its annotation names."""
    choices = f.metadata.get("choices")
    if choices:
        return click.Choice([str(c) for c in choices])
    kinds = [k.strip() for k in str(f.type).split("|")]
    if "str" in kinds:
        return str
    return {"int": int, "float": float}.get(kinds[0], str)


def field_option(f: dataclasses.Field) -> Callable:
    """The ``click.option`` of a :class:`~ebprop.runs.TrainOptions` field."""
    extra = _FIELD_EXTRAS.get(f.name, {})
    flag = "--" + f.name.replace("_", "-")
    if str(f.type) == "bool" and f.default is True:  # on by default: --x/--no-x
        flag = f"{flag}/--no-{flag[2:]}"
    decls = (*extra.get("decls", (flag,)), f.name)
    text = extra.get("help", f.metadata["help"])
    shown = _default_text(f.default)
    if shown is not None and "[default:" not in text:
        text += f" [default: {shown}]"
    kwargs: dict[str, Any] = {"help": text}
    if "callback" in extra:
        kwargs["callback"] = extra["callback"]
        if "default" in extra:
            kwargs["default"] = extra["default"]
    elif str(f.type) == "bool":
        kwargs["is_flag"], kwargs["default"] = True, f.default
    else:
        kwargs["type"] = extra.get("type", _click_type(f))
    return click.option(*decls, **kwargs)


#: The baselines' own fields (``--method bp|binaryconnect|binarynet``): activation, ...
_BASELINE_FIELDS = baseline_only_fields(option_keys(TrainOptions))
_FIELD_EXTRAS["batch_norm"] = {
    "decls": ("--batch-norm/--no-batch-norm",),
    "default": None,
    "callback": lambda ctx, param, v: v,
}


def _train_options(command: Callable) -> Callable:
    """Decorate ``command`` with one option per training-options field, in field order, then
    the baselines' own fields."""
    baseline = [f for f in dataclasses.fields(BaselineOptions) if f.name in _BASELINE_FIELDS]
    for f in reversed(baseline):
        command = field_option(f)(command)
    for f in reversed([f for f in dataclasses.fields(TrainOptions) if f.name != "extra"]):
        command = field_option(f)(command)
    return command


@click.command(cls=_TrainCommand)
@click.option(
    "--method",
    type=click.Choice(METHOD_CHOICES),
    default="ebp",
    show_default=True,
    help="ebp, or a torch baseline in the same harness (pip install 'ebprop[baselines]'; "
    "docs/baselines.md): bp, binaryconnect or binarynet, which take the options marked for "
    "them and not EBP's own.",
)
@_train_options
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    callback=_not_empty,
    help="Run directory. [default: runs/<dataset>-<timestamp>]",
)
@click.option(
    "--resume",
    type=click.Path(file_okay=False),
    callback=_not_empty,
    help="Continue the run in this directory from its checkpoint (--epochs may be raised).",
)
@click.option(
    "--from",
    "from_run",
    type=click.Path(file_okay=False),
    callback=_not_empty,
    help="Warm start: a new run (--out) that continues the finished run in this directory from "
    "its last checkpoint, with its options; only --epochs (more), --reinforcement (starting at "
    "or after the epoch it reached), --patience and --jobs may change.",
)
@click.option(
    "--checkpoint-every",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds between mid-epoch checkpoints.",
)
@click.option(
    "--quiet", "-q", is_flag=True, help="Print only the result: no progress bars, no epoch lines."
)
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as JSON.")
@click.pass_context
def train(ctx: click.Context, **kw) -> None:
    """Train a network and save it, its checkpoints, metrics and plots in a run directory.

    With no options: a binary 64-100-10 network on the bundled 8x8 digits, 10 epochs.
    """
    given = {
        name
        for name in (*_TRAIN_FIELDS, *_BASELINE_FIELDS)
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    }
    if {"hidden", "architecture"} <= given:
        raise click.UsageError("give --hidden or --architecture (--arch), not both")
    method = kw["method"]
    if kw["resume"] is not None and method == "ebp":
        method = stored_method(kw["resume"])
    if method != "ebp":
        ebp_only = frozenset(_TRAIN_FIELDS) - option_keys(BaselineOptions)
        train_baseline_run(kw, given, method, ebp_only, _default_out)
        return
    if given & set(_BASELINE_FIELDS):
        flags = ", ".join("--" + g.replace("_", "-") for g in sorted(given & set(_BASELINE_FIELDS)))
        raise click.UsageError(f"{flags}: for --method bp, binaryconnect or binarynet only")
    if kw["from_run"] is not None:
        if kw["resume"] is not None:
            raise click.UsageError("--from starts a new run and --resume continues one; give one")
        if given - WARM_START_CHANGES:
            flags = ", ".join(
                "--" + g.replace("_", "-") for g in sorted(given - WARM_START_CHANGES)
            )
            allowed = ", ".join("--" + g for g in sorted(WARM_START_CHANGES))
            raise click.UsageError(
                f"--from keeps the run's options; only {allowed} may be given, not {flags}"
            )
        source = load_options(kw["from_run"])
        out = kw["out"] or _default_out(source.dataset)
        options = warm_start(kw["from_run"], out, {name: kw[name] for name in given})
        kw["resume"] = out  # the new folder holds a run to continue
    elif kw["resume"] is not None:
        if kw["out"] is not None:
            raise click.UsageError("--resume DIR continues DIR; do not also give --out")
        if given - RESUMABLE_CHANGES:
            flags = ", ".join("--" + g.replace("_", "-") for g in sorted(given - RESUMABLE_CHANGES))
            raise click.UsageError(
                f"--resume uses the run's own options; only --epochs and --jobs may be given, "
                f"not {flags}"
            )
        out = kw["resume"]
        options = load_options(out)
        if given:
            for name in given:
                setattr(options, name, kw[name])
            try:
                options.validate()
            except ValueError as exc:
                raise click.UsageError(str(exc)) from None
    else:
        fields = {k: kw[k] for k in _TRAIN_FIELDS if kw.get(k) is not None}
        fields.setdefault("jobs", "auto")  # a new run's default; runs without it kept theirs
        try:
            options = TrainOptions(**fields)  # validates every option, once
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        out = kw["out"] or _default_out(options.dataset)

    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        # A minibatch (or an allocation) the handler cannot interrupt must not hold the process
        # past STOP_GRACE_S: faulthandler's watchdog thread exits without needing the GIL.
        faulthandler.dump_traceback_later(STOP_GRACE_S, exit=True, file=_devnull())
        click.echo("\nstopping at the next minibatch, saving a checkpoint…", err=True)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    hidden = options.architecture or "-".join(str(h) for h in options.hidden) or "none"
    quiet, as_json = kw["quiet"], kw["as_json"]

    def say(text: str) -> None:  # progress lines: stdout, or stderr when stdout is the JSON
        if not quiet:
            click.echo(text, err=as_json)

    verb = "resuming" if kw["resume"] else "training"
    if kw["from_run"] is not None:
        verb = f"from {kw['from_run']} (epoch {options.extra['warm_start']['epoch']}), training"
    first = (
        f"{verb} {options.weights} net (hidden {hidden}) on "
        f"{options.dataset} for {options.epochs} epoch{'s' if options.epochs != 1 else ''} → {out}"
    )
    try:
        summary = train_run(
            options,
            out,
            on_start=lambda engine: say(f"{first}; {engine}"),  # once the data is loaded
            resume=kw["resume"] is not None,
            progress=show_progress(quiet),
            on_epoch=lambda r: say(_epoch_line(r, options.epochs)),
            stop_event=stop,
            checkpoint_every=kw["checkpoint_every"],
        )
    finally:
        faulthandler.cancel_dump_traceback_later()
        for s, h in old.items():
            signal.signal(s, h)
    if not summary["finished"]:
        click.echo(
            f"stopped at epoch {summary['epoch'] + 1}, sample {summary['position']}; checkpoint "
            f"saved. Continue with: ebprop train --resume {out}",
            err=True,
        )
        ctx.exit(130)
    s = summary
    if as_json:
        click.echo(json.dumps(s | {"out_dir": str(out)}, indent=2, default=str))
        return
    click.echo(
        f"done: best epoch {s['best_epoch']}/{s['epochs_run']} (by validation EBP-"
        f"{'P' if options.select_by == 'probabilistic' else 'D'})"
        + (" — stopped early" if s["stopped_early"] else "")
    )
    click.echo(
        f"  test error  EBP-P {pct(s['test_error_p'])}   EBP-D {pct(s['test_error_d'])}   "
        f"(val P {pct(s['val_error_p'])}, D {pct(s['val_error_d'])})"
    )
    click.echo(
        f"  EBP-P calibration on test: NLL {s['test_nll']:.4f}  Brier {s['test_brier']:.4f}  "
        f"ECE {s['test_ece']:.4f}"
    )
    click.echo(
        f"  {s['n_weights']:,} weights, {s['n_features']} inputs, "
        f"{s['seconds_per_epoch_mean']:.2f} s/epoch; model: {Path(out) / 'model.npz'}"
    )
