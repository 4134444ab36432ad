"""``ebprop sweep`` and ``ebprop report``: the command-line shell over :mod:`ebprop.sweep`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .. import baselines, runs
from ..exceptions import EBPropError
from ..persist import deployed_bytes
from ..sweep import (
    aggregate,
    load_experiment,
    read_summary,
    run_status,
    run_sweep,
    select_runs,
    write_results,
)
from ..sweep.tables import docs_markdown, read_runs_csv, run_rows, runs_csv
from ..sweep.timing import parse_targets, time_rows, times_csv

__all__ = ["METHODS", "report", "sweep"]

#: Every training method a sweep file may name: EBP's and the baselines' (the sweep knows none
#: itself; it is handed them here).
METHODS = {**runs.METHODS, **baselines.METHODS}


@click.command()
@click.argument("experiment", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Sweep folder (default: the file's `out`, else runs/<experiment name>).",
)
@click.option(
    "--only",
    metavar="GLOB",
    help="Train only the runs whose names match GLOB, say '*-s2' for seed 2 (see --dry-run).",
)
@click.option(
    "--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
    help="Runs at a time on this machine (joblib processes, one BLAS thread each).",
)  # fmt: skip
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Dask scheduler (tcp://host:8786): one task per run; --out must be on a shared disk.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Dataset folder as the workers see it (overrides the file's data_dir).",
)
@click.option(
    "--threads", type=click.IntRange(min=1),
    help="BLAS/torch threads per run (default: 1 with --jobs > 1 or --scheduler, else all).",
)  # fmt: skip
@click.option("--dry-run", is_flag=True, help="List the runs and their state; train nothing.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the result: no progress bar.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the results table (and each run) as JSON."
)
def sweep(
    experiment: str,
    out: str | None,
    only: str | None,
    jobs: int,
    scheduler: str | None,
    data_dir: str | None,
    threads: int | None,
    dry_run: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Run the grid of training runs in EXPERIMENT (a TOML file; see docs/sweeps.md).

    Finished runs are skipped and interrupted ones resumed, so the same command continues a
    sweep. Writes results.csv, results.md and results.png into the sweep folder.
    """
    exp = load_experiment(experiment, methods=METHODS)
    out_dir = Path(out or exp.out or Path("runs") / exp.name)
    try:
        chosen = select_runs(exp, only)
    except ValueError as err:
        raise EBPropError(f"--only: {err}") from None
    states = {r.name: run_status(out_dir / r.name, r) for r in chosen}
    counts = {
        s: sum(v == s for v in states.values()) for s in ("done", "partial", "new", "conflict")
    }
    if not as_json or dry_run:  # stdout holds only the JSON
        picked = f" of {len(exp.runs)}, chosen by --only" if only is not None else ""
        click.echo(
            f"{exp.name}: {len(chosen)} runs{picked} in {out_dir} ({counts['done']} done, "
            f"{counts['partial']} to resume, {counts['new']} new"
            + (f", {counts['conflict']} with other settings" if counts["conflict"] else "")
            + ")"
        )
    if dry_run:
        for run in chosen:
            click.echo(f"  {states[run.name]:<8}{run.name}")
        return
    result = run_sweep(
        exp,
        out_dir,
        only=only,
        jobs=jobs,
        scheduler=scheduler,
        data_dir=data_dir,
        threads=threads,
        progress=not quiet and sys.stderr.isatty(),
    )
    ran = sum(o["status"] in ("done", "stopped") for o in result.outcomes)
    if as_json:
        files = {k: str(v) for k, v in result.files.items()}
        doc = {"name": exp.name, "out_dir": str(out_dir), "rows": result.rows, "files": files}
        doc["runs"] = result.outcomes
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        click.echo(f"trained {ran} run(s), skipped {counts['done']}; results:")
        for kind in ("md", "csv", "png"):
            click.echo(f"  {result.files[kind]}")
    if result.failed:
        for o in result.failed:
            click.echo(f"  FAILED {o['name']}: {o['error']}", err=True)
        raise EBPropError(
            f"{len(result.failed)} of {len(chosen)} runs failed (see above); fix the cause and "
            "run the same command again to retry them"
        )


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True))
@click.option(
    "--out", "-o", type=click.Path(file_okay=False),
    help="Folder for results.csv, results.md and results.png (--format files).",
)  # fmt: skip
@click.option("--title", default="results", show_default=True, help="Heading of results.md.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["files", "csv", "markdown"]),
    default="files",
    show_default=True,
    help="files: write the three files into --out; csv: print one row per run and readout "
    "(the runs table committed under experiments/); markdown: print the table the docs embed.",
)
@click.option(
    "--time-to",
    "time_to",
    metavar="ERRORS",
    help="Instead: print as CSV, for every run folder (finished or not), the training seconds "
    "(evaluation excluded) until its deployable readout first reached each validation error, "
    "in percent (e.g. 3.0,2.5).",
)
def report(
    sources: tuple[str, ...], out: str | None, title: str, fmt: str, time_to: str | None
) -> None:
    """One results table over the finished runs of sweep folders, run folders or runs tables.

    Every ``summary.json`` directly inside a SOURCE folder (or the folder's own) is read; runs that
    differ only in their seed are grouped, exactly as ``ebprop sweep`` does. A SOURCE that is a
    ``.csv`` runs table (``--format csv`` output) is read as it is (``--format markdown`` only).
    """
    if time_to is not None:
        _report_times(sources, time_to)
        return
    if fmt == "files" and out is None:
        raise click.UsageError("--format files writes into a folder: give --out DIR")
    summaries, tables = [], []
    for d in map(Path, sources):
        if d.is_file():
            if d.suffix != ".csv" or fmt != "markdown":
                raise click.UsageError(
                    f"{d}: a file SOURCE must be a runs table (.csv), read with --format markdown"
                )
            tables += read_runs_csv(d)
            continue
        paths = [d / "summary.json"] if (d / "summary.json").is_file() else []
        paths += sorted(d.glob("*/summary.json"))
        if not paths:
            raise EBPropError(f"{d}: no finished run (no summary.json) in this folder")
        summaries += [_with_size(read_summary(p), p.parent) for p in paths]
    if fmt == "csv":
        click.echo(runs_csv(run_rows(summaries, METHODS)), nl=False)
        return
    if fmt == "markdown":
        click.echo(docs_markdown(tables + run_rows(summaries, METHODS)), nl=False)
        return
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = write_results(aggregate(summaries), out_dir, title)
    click.echo(f"{len(summaries)} finished runs; results:")
    for kind in ("md", "csv", "png"):
        click.echo(f"  {files[kind]}")


def _with_size(summary: dict, run_dir: Path) -> dict:
    """A BinaryNet summary written before runs recorded their exported size gets it from the
    run's folded ``model.npz``."""
    model = run_dir / "model.npz"
    if summary.get("bytes_deployed") is None and summary.get("method") == "binarynet":
        if model.is_file():
            summary["bytes_deployed"] = deployed_bytes(model)
    return summary


def _report_times(sources: tuple[str, ...], time_to: str) -> None:
    try:
        targets = parse_targets(time_to)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    dirs = []
    for d in map(Path, sources):
        if (d / "options.json").is_file():
            dirs.append(d)
        else:
            dirs += sorted(p.parent for p in d.glob("*/metrics.jsonl"))
    if not dirs:
        raise EBPropError(f"{', '.join(sources)}: no run folder (no metrics.jsonl) found")
    click.echo(times_csv(time_rows(dirs, targets), targets), nl=False)
