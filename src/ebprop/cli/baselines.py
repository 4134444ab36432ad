"""``ebprop train --method bp|binaryconnect|binarynet``: a torch baseline run from the command line.

The same options as an EBP run where they mean the same (data, split, ``--hidden`` or
``--architecture``, epochs, ``--batch-size``, patience, shifts, biases), plus the baselines' own
(:class:`ebprop.baselines.BaselineOptions`); EBP's own options are refused by name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..baselines import train_baseline
from ..baselines.options import BASELINE_METHODS, BaselineOptions
from ..fileio import read_json
from ..runs import option_keys
from ..runs.folder import RunFolder
from .app import pct

__all__ = ["METHOD_CHOICES", "baseline_only_fields", "stored_method", "train_baseline_run"]

#: ``--method`` of ``ebprop train``: EBP, then the baselines.
METHOD_CHOICES = ("ebp", *BASELINE_METHODS)


def baseline_only_fields(ebp_fields: frozenset[str]) -> list[str]:
    """The baselines' option fields that EBP runs do not have (``method`` and ``extra`` aside)."""
    return sorted(option_keys(BaselineOptions) - ebp_fields - {"method"})


def stored_method(run_dir: str | Path) -> str:
    """The method of the run in ``run_dir``: its ``options.json`` ``method`` (a baseline's), or
    ``"ebp"`` (EBP runs store none; a folder without options is left to the EBP path's error)."""
    path = RunFolder(run_dir).options_path
    if not path.is_file():
        return "ebp"
    stored = read_json(path)
    method = stored.get("method") if isinstance(stored, dict) else None
    return method if method in BASELINE_METHODS else "ebp"


def _flags(names: set[str]) -> str:
    return ", ".join("--" + n.replace("_", "-") for n in sorted(names))


def train_baseline_run(
    kw: dict[str, Any],
    given: set[str],
    method: str,
    ebp_only: frozenset[str],
    default_out: Any,
) -> None:
    """Train (or with ``kw["resume"]`` continue) a baseline run and print it as ``ebprop train``
    prints EBP runs.

    Parameters
    ----------
    kw : the ``train`` command's parameters
    given : the option fields given on the command line
    method : one of :data:`ebprop.baselines.BASELINE_METHODS`
    ebp_only : the option fields only EBP runs have (refused here)
    default_out : callable(dataset) → the default run folder
    """
    if given & ebp_only:
        raise click.UsageError(
            f"only EBP runs take {_flags(given & ebp_only)}; --method {method} does not"
        )
    if kw["from_run"] is not None:
        raise click.UsageError(f"--from continues EBP runs only, not --method {method}")
    if kw["resume"] is not None:
        if kw["out"] is not None:
            raise click.UsageError("--resume DIR continues DIR; do not also give --out")
        if given - {"epochs"}:
            raise click.UsageError(
                f"--resume uses the run's own options; only --epochs may be given, not "
                f"{_flags(given - {'epochs'})}"
            )
        out = kw["resume"]
        options = RunFolder(out).read_options(BaselineOptions)
        if "epochs" in given:
            options.epochs = kw["epochs"]
            try:
                options.validate()
            except ValueError as exc:
                raise click.UsageError(str(exc)) from None
    else:
        fields = {k: kw[k] for k in given}  # the rest: the baselines' defaults
        try:
            options = BaselineOptions(**fields, method=method)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        out = kw["out"] or default_out(options.dataset)
    quiet, as_json = kw["quiet"], kw["as_json"]

    def say(text: str) -> None:  # progress lines: stdout, or stderr when stdout is the JSON
        if not quiet:
            click.echo(text, err=as_json)

    net = options.architecture or "-".join(str(h) for h in options.hidden) or "none"
    verb = "resuming" if kw["resume"] else "training"
    epochs = options.epochs
    say(f"{verb} {method} net (hidden {net}) on {options.dataset} for {epochs} epochs → {out}")

    def line(r: dict) -> str:
        return (
            f"epoch {r['epoch']:>3}/{epochs}  train {pct(r['train_error'])}  "
            f"val {pct(r['val_error'])}  test {pct(r['test_error'])}  {r['seconds']:.2f} s"
        )

    s = train_baseline(
        options, out, resume=kw["resume"] is not None, on_epoch=lambda r: say(line(r))
    )
    if as_json:
        click.echo(json.dumps(s | {"out_dir": str(out)}, indent=2, default=str))
        return
    (readout,) = s["readouts"]
    click.echo(
        f"done: best epoch {s['best_epoch']}/{s['epochs_run']} (by validation {readout})"
        + (" — stopped early" if s["stopped_early"] else "")
    )
    click.echo(f"  test error  {readout} {pct(s['test_error'])}   (val {pct(s['val_error'])})")
    model = Path(out) / "model.npz"
    where = f"; model: {model}" if model.exists() else ""
    click.echo(
        f"  {s['n_weights']:,} weights, {s['n_features']} inputs, "
        f"{s['seconds_per_epoch_mean']:.2f} s/epoch{where}"
    )
