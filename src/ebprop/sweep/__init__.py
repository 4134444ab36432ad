"""Sweeps: grids of training runs described in a TOML file, run resumably, summarised in a table.

========================== ==========================================================
:mod:`.experiment`         parse and validate an experiment file into named runs
:mod:`.execute`            run them (one by one, joblib processes or Dask), resumably
:mod:`.results`            the results table (CSV, Markdown) and plot over seeds
========================== ==========================================================
"""

from .execute import SweepResult, execute_run, run_status, run_sweep, select_runs
from .experiment import (
    METHODS,
    READOUTS,
    Experiment,
    ExperimentError,
    RunSpec,
    load_experiment,
    parse_experiment,
)
from .results import (
    COLUMNS,
    aggregate,
    plot_results,
    read_summary,
    results_markdown,
    write_results,
)

__all__ = [
    "COLUMNS",
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
    "read_summary",
    "results_markdown",
    "run_status",
    "run_sweep",
    "select_runs",
    "write_results",
]
