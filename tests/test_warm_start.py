"""Warm starts (``ebprop train --from RUN``): a branch equals the run trained in one go."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ebprop.cli import main
from ebprop.core import Reinforcement, parse_reinforcement
from ebprop.persist import load_model
from ebprop.runs import TrainOptions, load_options, train_run, warm_start

BASE = {"hidden": (12, 12), "epochs": 2, "seed": 3}
LATE = "hidden=1.01,start=2"  # begins where the base run stopped


def _records(run_dir):
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for r in recs:  # wall-clock fields differ between runs
        for k in ("seconds", "samples_per_s", "eval_seconds", "cpu_seconds"):
            r.pop(k)
    return recs


def _arrays(path):
    est = load_model(path).estimator
    return [*est.coefs_, *est.intercepts_]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    out = tmp_path_factory.mktemp("warm") / "base"
    train_run(TrainOptions(**BASE), out, make_plots=False)
    return out


def test_branch_equals_the_run_trained_with_that_schedule_from_the_start(base, tmp_path):
    branch = tmp_path / "branch"
    opts = warm_start(base, branch, {"epochs": 4, "reinforcement": LATE})
    assert opts.extra["warm_start"] == {"run": str(base.resolve()), "epoch": 2}
    got = train_run(None, branch, resume=True, make_plots=False)
    ref_dir = tmp_path / "direct"
    ref = train_run(
        TrainOptions(**BASE | {"epochs": 4, "reinforcement": LATE}), ref_dir, make_plots=False
    )
    assert _records(branch) == _records(ref_dir)
    for name in ("last.npz", "model.npz", "model_d.npz", "model_p.npz"):
        for a, b in zip(_arrays(branch / name), _arrays(ref_dir / name), strict=True):
            np.testing.assert_array_equal(a, b)
    for key in ("best_epoch", "test_error_p", "test_error_d", "epochs_run"):
        assert got[key] == ref[key]
    # the reinforcement did act: the branch differs from plain EBP over the same epochs
    plain = tmp_path / "plain"
    train_run(TrainOptions(**BASE | {"epochs": 4}), plain, make_plots=False)
    assert not np.array_equal(_arrays(plain / "last.npz")[1], _arrays(branch / "last.npz")[1])


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"epochs": 4, "seed": 1}, "may change only"),
        ({"epochs": 2}, "must exceed the 2 epochs"),
        ({"epochs": 4, "reinforcement": "hidden=1.01,start=1"}, "start at or after epoch 2"),
        ({"epochs": 4, "reinforcement": "bogus"}, "reinforcement"),
    ],
)
def test_warm_start_refuses_what_would_rewrite_the_past(base, tmp_path, changes, match):
    with pytest.raises(ValueError, match=match):
        warm_start(base, tmp_path / "x", changes)
    assert not (tmp_path / "x").exists()


def test_a_begun_schedule_cannot_be_replaced(tmp_path):
    src = tmp_path / "early"
    train_run(
        TrainOptions(**BASE | {"reinforcement": "hidden=1.01,start=1"}), src, make_plots=False
    )
    with pytest.raises(ValueError, match="must not have begun"):
        warm_start(src, tmp_path / "x", {"epochs": 3, "reinforcement": "hidden=1.01,start=2"})
    opts = warm_start(src, tmp_path / "same", {"epochs": 3})  # keeping it is fine
    assert opts.reinforcement == Reinforcement(hidden=1.01, start=1)  # held parsed


def test_warm_start_needs_a_finished_run_and_a_new_folder(base, tmp_path):
    part = tmp_path / "part"
    train_run(TrainOptions(**BASE), part, on_batch=lambda e, p, n: p >= 50, checkpoint_every=None)
    with pytest.raises(FileNotFoundError, match="not a finished run"):
        warm_start(part, tmp_path / "x", {"epochs": 4})
    with pytest.raises(FileExistsError, match="already holds a run"):
        warm_start(base, part, {"epochs": 4})
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        warm_start(tmp_path / "nothing", tmp_path / "y", {"epochs": 4})


def test_cli_from(base, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["train", "--from", str(base), "--epochs", "3", "--reinforcement", LATE, "-q"]
    res = runner.invoke(main, [*args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert load_options(out).reinforcement == parse_reinforcement(LATE)
    assert len(_records(out)) == 3 and (out / "summary.json").is_file()
    bad = runner.invoke(
        main, ["train", "--from", str(base), "--seed", "1", "--out", str(tmp_path / "b")]
    )
    assert bad.exit_code == 2
    assert "only --epochs, --jobs, --patience, --reinforcement" in bad.output
    assert "not --seed" in bad.output
    both = runner.invoke(main, ["train", "--from", str(base), "--resume", str(out)])
    assert both.exit_code == 2 and "give one" in both.output
    few = runner.invoke(main, ["train", "--from", str(base), "--out", str(tmp_path / "c")])
    assert few.exit_code == 1 and "must exceed the 2 epochs" in few.output
