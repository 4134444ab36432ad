"""Sweeps: experiment parsing and validation, skip/resume, joblib and Dask execution, the table."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ebprop import baselines, runs
from ebprop.cli import main
from ebprop.sweep import (
    ExperimentError,
    aggregate,
    load_experiment,
    parse_experiment,
    results_markdown,
    run_status,
    run_sweep,
    write_results,
)

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "experiments" / "smoke.toml"
#: EBP and the baselines, as ``ebprop sweep`` hands them to the sweep.
METHODS = {**runs.METHODS, **baselines.METHODS}

TINY = """
name = "tiny"
[settings]
dataset = "digits"
epochs = 1
batch_size = 8
[[grid]]
hidden = [32]
weights = "binary"
seed = [0, 1]
"""


@pytest.fixture
def no_run_plots(monkeypatch):
    """Skip the per-run figures of ebprop.runs (most of a tiny run's time) in this process."""
    import ebprop.plots

    for name in ("learning_curves", "confusion_matrix_plot", "reliability_diagram",
                 "confidence_histograms"):  # fmt: skip
        monkeypatch.setattr(ebprop.plots, name, lambda *a, **k: None)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------- parsing
def test_smoke_file_expands_to_named_runs():
    exp = load_experiment(SMOKE)
    assert exp.name == "smoke"
    assert [r.name for r in exp.runs] == [
        "ebp-binary-h32-f_none-do1-s0",
        "ebp-binary-h32-f_none-do1-s1",
        "ebp-real-h32-f_none-do1-s0",
        "ebp-real-h32-f_none-do1-s1",
    ]
    r = exp.runs[0]
    assert r.method == "ebp" and r.options["epochs"] == 2 and r.options["hidden"] == [32]
    assert r.group == "ebp-binary-h32-f_none-do1"


def test_axes_hidden_filters_dropout_and_extra_axes_in_names():
    exp = parse_experiment(
        """
        [settings]
        seed = 3
        [[grid]]
        hidden = [[800], [500, 500]]
        filters = ["none", "default"]
        input_dropout = ["none", 0.8]
        learning_rate = 0.01
        method = "bp"
        [[grid]]
        method = "binaryconnect"
        hidden = 100
        init_variance = 2.0
        """.replace("init_variance = 2.0", "learning_rate = [0.001, 0.003]"),
        methods=METHODS,
    )
    names = [r.name for r in exp.runs]
    assert len(names) == 8 + 2
    assert "bp-real-h500x500-f_default-do0.8-relu-hd1-s3" in names
    assert "bp-real-h800-f_none-do1-relu-hd1-s3" in names
    # learning_rate is an axis of the second grid only, so only there is it in the name
    assert "binaryconnect-binary-h100-f_none-do1-relu-hd1-lr0.001-s3" in names
    bc = [r for r in exp.runs if r.method == "binaryconnect"][0]
    assert bc.options["batch_norm"] is True and bc.options["seed"] == 3


def test_settings_that_do_not_apply_are_left_out_per_method():
    exp = parse_experiment(
        """
        [settings]
        weights = ["binary", "real"]
        select_by = "deterministic"
        activation = "tanh"
        [[grid]]
        method = ["ebp", "bp"]
        hidden = [8]
        """,
        methods=METHODS,
    )
    by_method = {}
    for r in exp.runs:
        by_method.setdefault(r.method, []).append(r)
    assert len(by_method["ebp"]) == 2 and len(by_method["bp"]) == 1
    assert by_method["ebp"][0].options["select_by"] == "deterministic"
    assert by_method["bp"][0].options["activation"] == "tanh"
    assert "activation" not in by_method["ebp"][0].options


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[settings\n", "invalid TOML"),
        ("epochs = 3\n", "unknown top-level key.*'epochs'.*settings"),
        ("name = 3\n", "name must be a string"),
        ("settings = 3\n", "settings must be a table"),
        ("[settings]\nepoch = 3\n", "settings: unknown key 'epoch'"),
        ("[[grid]]\nlearning_rat = 3\n", "grid 1: unknown key 'learning_rat'"),
        ("grid = [1]\n", "grid must be a table"),
        ("[[grid]]\nmethod = 'sgd'\n", "key 'method'.*unknown method 'sgd'"),
        ("[[grid]]\nweights = ['binary', 'ternary']\n", "weights must be 'binary' or 'real'"),
        ("[[grid]]\nhidden = [[10], 5]\n", "key 'hidden'.*hidden must be a list of widths"),
        ("[[grid]]\nhidden = [0]\n", r"grid 1: hidden must be hidden layer widths, each"),
        ("[[grid]]\nhidden = [true]\n", r"grid 1: hidden must be .*got \(True,\)"),
        ("[[grid]]\nseed = []\n", "seed is an empty list"),
        ("[[grid]]\nepochs = 0\n", "grid 1: epochs must be a positive integer"),
        ("[[grid]]\nfilters = 'wavelets'\n", "grid 1: filters: unknown filter bank 'wavelets'"),
        ("[[grid]]\nfilters = 3\n", "filters must be a string"),
        ("[[grid]]\ndataset = 'cifar'\n", "unknown dataset 'cifar'"),
        ("[[grid]]\nscaling = 'log'\n", "unknown scaling 'log'"),
        ("[[grid]]\nactivation = 'relu'\n", "key 'activation' does not apply to method"),
        ("[[grid]]\nmethod = 'binaryconnect'\nweights = 'real'\n", "binaryconnect trains binary"),
        ("[[grid]]\nmethod = 'bp'\nactivation = 'sigmoid'\n", "unknown activation 'sigmoid'"),
        ("[[grid]]\nmethod = 'bp'\nhidden_dropout = 1.5\n", "hidden_dropout must be a keep"),
        ("[[grid]]\ninput_dropout = 0\n", "input_dropout must be a keep probability"),
        ("[[grid]]\ndata_dir = '/x'\n", "data_dir belongs in \\[settings\\]"),
        ("[settings]\ndata_dir = 3\n", "data_dir must be a string"),
        ("[[grid]]\nepochs = {a = 1}\n", "epochs must be a value or a list"),
        (
            "[[grid]]\nepochs = 1\n[[grid]]\nepochs = 2\n",
            "two different runs would share the directory 'ebp-binary-h100-f_none-do1-s0'.*epochs",
        ),
    ],
)
def test_bad_experiment_files_fail_naming_the_problem(text, match):
    with pytest.raises(ExperimentError, match=match):
        parse_experiment(text, "exp.toml", methods=METHODS)


def test_errors_name_the_file_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[grid]]\nbatch_size = -1\n")
    with pytest.raises(ExperimentError, match=r"bad\.toml: grid 1: batch_size must be a positive"):
        load_experiment(bad)
    with pytest.raises(ExperimentError, match="no such experiment file"):
        load_experiment(tmp_path / "missing.toml")


def test_duplicate_identical_runs_are_merged():
    exp = parse_experiment("[[grid]]\nseed = [0, 0, 1]\n[[grid]]\nseed = 1\n")
    assert [r.name for r in exp.runs] == [
        "ebp-binary-h100-f_none-do1-s0",
        "ebp-binary-h100-f_none-do1-s1",
    ]


# ---------------------------------------------------------------------------- the results table
def _ebp_summary(seed, weights, p, d, hidden=(100,), group=None, sec=2.0):
    opts = {"hidden": list(hidden), "weights": weights, "seed": seed, "filters": None,
            "input_dropout": 0.8}  # fmt: skip
    if group:
        opts["extra"] = {"group": group}
    return {
        "options": opts,
        "best_epoch": 3 + seed,
        "epochs_run": 10,
        "val_error_p": p + 0.01,
        "val_error_d": d + 0.01,
        "test_error_p": p,
        "test_error_d": d,
        "seconds_per_epoch_mean": sec,
        "n_weights": 1000,
    }


def test_aggregate_mean_std_over_seeds_per_readout():
    summaries = [
        _ebp_summary(0, "binary", 0.02, 0.03, group="g"),
        _ebp_summary(1, "binary", 0.04, 0.05, group="g", sec=4.0),
        _ebp_summary(2, "binary", 0.03, 0.07, group="g"),
        _ebp_summary(0, "real", 0.01, 0.02),  # no extra: the group is derived from the options
        {
            "method": "bp",
            "options": {"hidden": [100], "seed": 0, "filters": "default", "input_dropout": None},
            "readouts": {"BP": {"val_error": 0.011, "test_error": 0.015}},
            "best_epoch": 7,
            "epochs_run": 9,
            "seconds_per_epoch_mean": 0.5,
            "n_weights": 1000,
        },
    ]
    rows = aggregate(summaries)
    key = [(r["method"], r["weights"], r["readout"]) for r in rows]
    assert key == [
        ("ebp", "binary", "EBP-P"),
        ("ebp", "binary", "EBP-D"),
        ("ebp", "real", "EBP-P"),
        ("ebp", "real", "EBP-D"),
        ("bp", "real", "BP"),
    ]
    p, d = rows[0], rows[1]
    assert p["n"] == 3 and p["seeds"] == "0 1 2"
    assert p["test_error_mean"] == pytest.approx(0.03)
    assert p["test_error_std"] == pytest.approx(0.01)  # ddof = 1: sqrt((1+1+0)/2) %
    assert d["test_error_mean"] == pytest.approx(0.05)
    assert d["test_error_std"] == pytest.approx(np.std([0.03, 0.05, 0.07], ddof=1))
    assert p["val_error_mean"] == pytest.approx(0.04)
    assert p["best_epoch_mean"] == pytest.approx(4.0)
    assert p["seconds_per_epoch_mean"] == pytest.approx(8 / 3)
    assert rows[2]["group"] == "ebp-real-h100-f_none-do0.8"
    assert rows[2]["n"] == 1 and rows[2]["test_error_std"] is None
    bp = rows[4]
    assert bp["test_error_mean"] == 0.015 and bp["filters"] == "default"
    assert bp["input_dropout"] is None and bp["group"] == "bp-real-h100-f_default-do1-relu-hd1"

    md = results_markdown(rows, "t")
    assert (
        "| g | EBP-P | binary | 100 | none | 0.8 | 3 | 3.00 ± 1.00 | 4.00 | 4.0 | 2.67 | 1,000 |"
        in md
    )
    assert "| EBP-P | real | 100 | none | 0.8 | 1 | 1.00 | 2.00 |" in md  # no ± for one seed


def test_write_results_files(tmp_path):
    rows = aggregate([_ebp_summary(s, "binary", 0.02 + s / 100, 0.03) for s in range(2)])
    files = write_results(rows, tmp_path, title="x")
    table = _read_csv(files["csv"])
    assert [r["readout"] for r in table] == ["EBP-P", "EBP-D"]
    assert float(table[0]["test_error_mean"]) == pytest.approx(0.025)
    assert table[1]["test_error_std"] == "0.0"
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert files["md"].read_text().startswith("# x\n")
    write_results([], tmp_path / "", title="empty")  # an empty sweep still writes its files
    assert _read_csv(files["csv"]) == []


# ---------------------------------------------------------------------------- running
def test_cli_smoke_sweep_skip_and_resume(tmp_path):
    out = tmp_path / "smoke"
    runner = CliRunner()
    res = runner.invoke(main, ["sweep", str(SMOKE), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "4 runs" in res.output and "4 new" in res.output
    table = _read_csv(out / "results.csv")
    assert len(table) == 4 and {r["n"] for r in table} == {"2"}
    assert {r["readout"] for r in table} == {"EBP-P", "EBP-D"}
    for r in table:  # these tiny nets learn digits well above chance (90 % error)
        assert float(r["test_error_mean"]) < 0.5
    assert (out / "experiment.toml").read_text() == SMOKE.read_text()
    assert len(json.loads((out / "runs.json").read_text())) == 4

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")}
    res = runner.invoke(main, ["sweep", str(SMOKE), "--out", str(out), "-q"])
    assert res.exit_code == 0 and "4 done" in res.output and "trained 0 run(s)" in res.output
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")}

    victim = out / "ebp-real-h32-f_none-do1-s1" / "summary.json"
    before = json.loads(victim.read_text())
    victim.unlink()
    res = runner.invoke(main, ["sweep", str(SMOKE), "--out", str(out), "--dry-run"])
    assert "partial ebp-real-h32-f_none-do1-s1" in " ".join(res.output.split())
    res = runner.invoke(main, ["sweep", str(SMOKE), "--out", str(out), "-q"])
    assert res.exit_code == 0 and "trained 1 run(s), skipped 3" in res.output
    after = json.loads(victim.read_text())
    assert after["test_error_p"] == before["test_error_p"]
    changed = [p for p, t in stamps.items() if p.stat().st_mtime_ns != t]
    assert changed == [victim]


def test_only_trains_the_runs_it_names_and_reports_them_all(tmp_path, no_run_plots):
    toml = tmp_path / "tiny.toml"
    toml.write_text(TINY)
    out = tmp_path / "sw"
    first, second = (r.name for r in parse_experiment(TINY).runs)
    assert first.endswith("-s0") and second.endswith("-s1")
    runner = CliRunner()
    base = ["sweep", str(toml), "--out", str(out)]
    res = runner.invoke(main, [*base, "--only", "*-s1", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "1 runs of 2, chosen by --only" in res.output
    assert second in res.output and first not in res.output
    res = runner.invoke(main, [*base, "--only", "*-s1", "-q"])
    assert res.exit_code == 0 and "trained 1 run(s)" in res.output, res.output
    assert (out / second / "summary.json").is_file() and not (out / first).exists()
    assert [r["n"] for r in _read_csv(out / "results.csv")] == ["1", "1"]  # EBP-P, EBP-D
    res = runner.invoke(main, [*base, "-q"])  # the rest of the sweep: the other seed only
    assert res.exit_code == 0 and "trained 1 run(s), skipped 1" in res.output, res.output
    assert [r["n"] for r in _read_csv(out / "results.csv")] == ["2", "2"]


def test_only_matching_no_run_is_a_one_line_error_before_any_write(tmp_path):
    toml = tmp_path / "tiny.toml"
    toml.write_text(TINY)
    res = CliRunner().invoke(
        main, ["sweep", str(toml), "--out", str(tmp_path / "sw"), "--only", "*-s9"]
    )
    assert res.exit_code != 0 and not (tmp_path / "sw").exists()
    message = res.output.strip()
    assert "\n" not in message and "--only: the glob '*-s9' matches none of the 2" in message
    assert "--dry-run" in message
    with pytest.raises(ValueError, match="matches none of the 2 run names of 'tiny'"):
        run_sweep(parse_experiment(TINY), tmp_path / "py", only="tiny", progress=False)
    assert not (tmp_path / "py").exists()


def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, no_run_plots):
    from ebprop.runs import TrainOptions, train_run

    exp = parse_experiment(TINY)
    spec = exp.runs[0]
    run_dir = tmp_path / "sweep" / spec.name
    stopped = train_run(
        TrainOptions.from_dict(spec.options), run_dir, on_batch=lambda e, pos, n: pos > 400
    )
    assert stopped["finished"] is False and run_status(run_dir, spec) == "partial"
    result = run_sweep(exp, tmp_path / "sweep", progress=False)
    assert sorted(o["status"] for o in result.outcomes) == ["done", "done"]
    clean = train_run(TrainOptions.from_dict(spec.options), tmp_path / "clean")
    resumed = json.loads((run_dir / "summary.json").read_text())
    for key in ("test_error_p", "test_error_d", "val_error_p", "best_epoch"):
        assert resumed[key] == clean[key]


def test_failed_run_is_reported_and_others_finish(tmp_path, no_run_plots):
    exp = parse_experiment(TINY)
    bad = tmp_path / exp.runs[1].name
    bad.mkdir(parents=True)
    opts = dict(exp.runs[1].options, batch_size=3)  # a run dir holding a different run
    (bad / "options.json").write_text(json.dumps(opts))
    toml = tmp_path / "tiny.toml"
    toml.write_text(TINY)
    res = CliRunner().invoke(main, ["sweep", str(toml), "--out", str(tmp_path), "-q"])
    assert res.exit_code == 1
    assert f"FAILED {exp.runs[1].name}: ValueError:" in res.output
    assert "1 of 2 runs failed" in res.output
    assert (tmp_path / exp.runs[0].name / "summary.json").is_file()
    assert len(_read_csv(tmp_path / "results.csv")) == 2  # the finished run's two readouts


def test_bad_file_on_the_command_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[grid]]\nwieghts = 'binary'\n")
    res = CliRunner().invoke(main, ["sweep", str(bad)])
    assert res.exit_code == 1
    assert "error: " in res.output and "unknown key 'wieghts'" in res.output


def test_run_sweep_rejects_bad_jobs(tmp_path):
    with pytest.raises(ValueError, match="jobs must be an integer >= 1"):
        run_sweep(parse_experiment(TINY), tmp_path, jobs=0)


@pytest.mark.slow
def test_joblib_processes(tmp_path):
    exp = parse_experiment(TINY)
    result = run_sweep(exp, tmp_path, jobs=2, progress=False)
    assert sorted(o["status"] for o in result.outcomes) == ["done", "done"]
    assert [r["n"] for r in result.rows] == [2, 2]


def test_joblib_threads_limit_blas_per_run(tmp_path):
    """Runs in a fresh interpreter with two BLAS threads allowed, so that the check can fail:
    the worker reports threadpoolctl's view from inside the run."""
    script = f"""
import json, sys, threading
from joblib import parallel_config
from threadpoolctl import threadpool_info
import ebprop.plots, ebprop.runs
from ebprop.sweep import parse_experiment, run_sweep
for name in ("learning_curves", "confusion_matrix_plot", "reliability_diagram",
             "confidence_histograms"):
    setattr(ebprop.plots, name, lambda *a, **k: None)
seen, real = [], ebprop.runs.train_run
# Both runs look once both are inside their limits: with threads, a run that ended first
# would otherwise restore the process-wide pools under the other's feet (a race, not the check).
both = threading.Barrier(2, timeout=120)
def spy(*args, **kwargs):
    both.wait()
    seen.append(sorted({{p["num_threads"] for p in threadpool_info()}}))
    return real(*args, **kwargs)
before = sorted({{p["num_threads"] for p in threadpool_info()}})
spied = ebprop.runs.TrainingMethod(ebprop.runs.TrainOptions, spy)  # the sweep trains with it
exp = parse_experiment({TINY!r}, methods={{"ebp": spied}})
with parallel_config(backend="threading"):
    result = run_sweep(exp, {str(tmp_path)!r}, jobs=2, progress=False)
print(json.dumps({{"before": before, "seen": seen,
                  "status": [o["status"] for o in result.outcomes]}}))
"""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env.update(OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["status"] == ["done", "done"]
    assert max(report["before"]) >= 2, report  # the process itself may use two threads
    assert report["seen"] and all(s == [1] for s in report["seen"]), report


def test_dask_local_cluster(tmp_path, no_run_plots):
    distributed = pytest.importorskip("distributed")
    exp = parse_experiment(TINY)
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        result = run_sweep(exp, tmp_path, scheduler=cluster.scheduler_address, progress=False)
    assert sorted(o["status"] for o in result.outcomes) == ["done", "done"]
    rows = result.rows
    assert [r["readout"] for r in rows] == ["EBP-P", "EBP-D"] and rows[0]["n"] == 2
    assert all(math.isfinite(r["test_error_mean"]) for r in rows)
    # the same sweep again, locally: everything is already done
    again = run_sweep(exp, tmp_path, progress=False)
    assert [o["status"] for o in again.outcomes] == ["skipped", "skipped"]
    shutil.rmtree(tmp_path / exp.runs[0].name)
    assert run_status(tmp_path / exp.runs[0].name, exp.runs[0]) == "new"


def test_baseline_smoke_sweep(tmp_path):
    pytest.importorskip("torch")
    exp = load_experiment(ROOT / "experiments" / "smoke_baselines.toml", methods=METHODS)
    result = run_sweep(exp, tmp_path, progress=False, threads=1)
    assert sorted(o["status"] for o in result.outcomes) == ["done", "done"]
    assert [(r["method"], r["readout"], r["weights"]) for r in result.rows] == [
        ("bp", "BP", "real"),
        ("binaryconnect", "BC", "binary"),
    ]
    assert all(r["test_error_mean"] < 0.5 for r in result.rows)


def test_a_folder_with_other_settings_is_never_reported_done(tmp_path, no_run_plots):
    """Issue 11 item 1: a run is identified by all its settings, not only by its folder name."""
    first = parse_experiment(TINY)
    assert [o["status"] for o in run_sweep(first, tmp_path, progress=False).outcomes] == [
        "done",
        "done",
    ]
    changed = parse_experiment(TINY.replace("batch_size = 8", "batch_size = 16"))
    assert [r.name for r in changed.runs] == [r.name for r in first.runs]  # same folders
    assert all(run_status(tmp_path / r.name, r) == "conflict" for r in changed.runs)
    result = run_sweep(changed, tmp_path, progress=False)
    assert [o["status"] for o in result.outcomes] == ["failed", "failed"]
    assert all("other options ['batch_size']" in o["error"] for o in result.outcomes)
    assert result.rows == []  # the stale runs are not reported as this sweep's results
    toml = tmp_path / "changed.toml"
    toml.write_text(TINY.replace("batch_size = 8", "batch_size = 16"))
    res = CliRunner().invoke(main, ["sweep", str(toml), "--out", str(tmp_path), "--dry-run"])
    assert "2 with other settings" in res.output and "conflict" in res.output


def test_sweep_keys_are_the_option_fields():
    from ebprop.baselines import BaselineOptions
    from ebprop.core import AUTO_REINFORCEMENT as AUTO
    from ebprop.runs import TrainOptions, option_keys
    from ebprop.sweep.experiment import method_keys

    assert method_keys(METHODS["ebp"]) == option_keys(TrainOptions) | {"method"}
    assert method_keys(METHODS["bp"]) == option_keys(BaselineOptions)
    exp = parse_experiment("[[grid]]\nreinforcement = ['none', 'auto']\nepochs = 1\n")
    # the options hold the parsed schedule (stored as its spec), the names the value as written
    assert [r.options["reinforcement"] for r in exp.runs] == [None, AUTO.to_spec()]
    assert [r.name.split("-")[-2] for r in exp.runs] == ["rfnone", "rfauto"]


def test_cli_sweep_json_prints_the_table(tmp_path):
    toml = tmp_path / "tiny.toml"
    toml.write_text(TINY)
    res = CliRunner().invoke(main, ["sweep", str(toml), "--out", str(tmp_path / "s"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["rows"] and len(doc["runs"]) == len(parse_experiment(TINY).runs)
    table = _read_csv(tmp_path / "s" / "results.csv")
    assert [r["readout"] for r in table] == [r["readout"] for r in doc["rows"]]


def test_the_sweep_trains_with_the_methods_it_is_handed(tmp_path):
    """The sweep knows no method itself (so it needs nothing from the baselines): a grid names
    the methods it was given, and each run is trained by its method's train function."""
    with pytest.raises(ExperimentError, match=r"unknown method 'bp'; choose from ebp \(from Pyt"):
        parse_experiment("[[grid]]\nmethod = 'bp'\n")  # EBP alone by default
    calls = []

    def fake(options, run_dir, **kwargs):
        calls.append((type(options).__name__, Path(run_dir).name, sorted(kwargs)))
        return {"finished": True}

    methods = {
        "ebp": runs.TrainingMethod(runs.TrainOptions, fake),
        "bp": runs.TrainingMethod(baselines.BaselineOptions, fake, takes_threads=True),
    }
    exp = parse_experiment("[[grid]]\nmethod = ['ebp', 'bp']\nhidden = [4]\n", methods=methods)
    assert exp.methods is not METHODS and set(exp.methods) == {"ebp", "bp"}
    result = run_sweep(exp, tmp_path, progress=False, threads=1)
    assert [o["status"] for o in result.outcomes] == ["done", "done"]
    assert calls == [
        ("TrainOptions", exp.runs[0].name, ["progress", "resume", "stop_event"]),
        ("BaselineOptions", exp.runs[1].name, ["progress", "resume", "stop_event", "threads"]),
    ]
