"""reinforcement="auto" fitted to the budget, and the warning for a schedule that never starts
(issue 32)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.datasets import load_digits

from ebprop import EBPClassifier
from ebprop.cli import main
from ebprop.core import (
    AUTO_REINFORCEMENT,
    Reinforcement,
    ReinforcementWarning,
    never_starts,
    parse_reinforcement,
    resolve_auto,
)
from ebprop.core.reinforce import AUTO_PLAIN_FRACTION, AUTO_POLARISATION
from ebprop.persist import load_model
from ebprop.runs import TrainOptions, train_run


def test_auto_on_mnist_budgets():
    # MNIST's 50,000 training images, batch 10 (5,000 minibatches per epoch)
    eight = resolve_auto(AUTO_REINFORCEMENT, 8, 50_000, 10)
    assert eight.start == 4.0 and eight.hidden == pytest.approx(1.0002, abs=1e-7)
    long = resolve_auto(AUTO_REINFORCEMENT, 46, 50_000, 10)
    assert long.start == 23.0 and long.hidden == pytest.approx(1 + 4 / (5000 * 23), abs=1e-8)


@pytest.mark.parametrize(
    ("epochs", "n", "batch"), [(1, 5000, 10), (3, 1437, 10), (20, 60_000, 100), (200, 50_000, 1)]
)
def test_auto_polarises_by_the_same_factor_whatever_the_budget(epochs, n, batch):
    sched = resolve_auto(AUTO_REINFORCEMENT, epochs, n, batch)
    assert sched.start == AUTO_PLAIN_FRACTION * epochs < epochs and not sched.auto
    assert sched.from_auto and sched.to_spec().startswith("auto:hidden=")
    minibatches = math.ceil(n / batch) * (epochs - sched.start)
    # Σ log ρ over the reinforced minibatches, from the factors the trainer applies
    total = minibatches * math.log(sched.factors(2, sched.start + 1e-9)[0])
    assert total == pytest.approx(AUTO_POLARISATION, rel=1e-5)
    assert sched.factors(2, sched.start - 1e-9) is None  # plain before start
    assert parse_reinforcement(sched.to_spec()) == sched  # stored and read back as is


def test_auto_caps_rho_on_a_tiny_budget():
    sched = resolve_auto(AUTO_REINFORCEMENT, 1, 10, 10)  # one minibatch in all
    assert sched.hidden == pytest.approx(1.05)


def test_a_sweep_asking_auto_again_finds_its_run(tmp_path):
    from ebprop.runs.folder import differing_options

    resolved = resolve_auto(AUTO_REINFORCEMENT, 8, 50_000, 10).to_spec()
    assert differing_options({"reinforcement": "auto"}, {"reinforcement": resolved}) == []
    assert differing_options({"reinforcement": "auto"}, {"reinforcement": "1.0002"}) == [
        "reinforcement"
    ]


def test_other_schedules_and_none_pass_through():
    explicit = Reinforcement(hidden=1.0001, start=3.0)
    assert resolve_auto(explicit, 8, 50_000, 10) is explicit
    assert resolve_auto(None, 8, 50_000, 10) is None


def test_unresolved_auto_is_the_old_fixed_schedule():
    # what run folders that stored 'auto' trained and resume with
    assert AUTO_REINFORCEMENT.auto and AUTO_REINFORCEMENT.to_spec() == "auto"
    assert (AUTO_REINFORCEMENT.hidden, AUTO_REINFORCEMENT.start) == (1.0001, 20.0)
    assert parse_reinforcement("auto") is AUTO_REINFORCEMENT


def test_never_starts():
    late = Reinforcement(hidden=1.0001, start=8.0)
    message = never_starts(late, 8)
    assert "never start" in message and "start=8.0" in message and "\n" not in message
    assert never_starts(late, 9) is None
    assert never_starts(None, 1) is None
    assert "20 plain epochs" in never_starts(AUTO_REINFORCEMENT, 8)


def _digits():
    X, y = load_digits(return_X_y=True)
    return X[:1000] / 16.0, y[:1000], X[1000:] / 16.0, y[1000:]


def test_auto_at_a_short_budget_reinforces():
    Xtr, ytr, _, _ = _digits()
    fields = {}
    for name in ("auto", None):
        est = EBPClassifier((64,), max_iter=2, random_state=0, reinforcement=name)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ReinforcementWarning)  # auto always starts
            est.fit(Xtr, ytr)
        fields[name] = np.abs(est.coefs_[0]).mean()
        if name == "auto":
            # 100 minibatches per epoch, one epoch reinforced
            assert est.reinforcement_.start == 1.0
            assert est.reinforcement_.hidden == pytest.approx(math.exp(0.04), abs=1e-8)
    # after one reinforced epoch (e⁴ from reinforcement) the hidden fields are far larger
    assert fields["auto"] > 5 * fields[None]


def test_a_schedule_that_cannot_start_warns_once():
    Xtr, ytr, _, _ = _digits()
    est = EBPClassifier((16,), max_iter=2, random_state=0, reinforcement="hidden=1.001,start=2")
    with pytest.warns(ReinforcementWarning, match="starts at epoch 2.*never start") as caught:
        est.fit(Xtr, ytr)
    assert len([w for w in caught if issubclass(w.category, ReinforcementWarning)]) == 1


def test_cli_warning_is_one_line(tmp_path):
    r = CliRunner().invoke(
        main,
        ["train", "--hidden", "16", "--epochs", "1", "--reinforcement", "hidden=1.001,start=3",
         "-q", "--out", str(tmp_path / "r")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if "never start" in ln]
    assert len(lines) == 1 and lines[0].startswith("warning: reinforcement ")


SMALL = dict(dataset="digits", hidden=(16,), epochs=2, batch_size=10, reinforcement="auto")


def test_run_stores_the_resolved_schedule_and_resume_keeps_it(tmp_path):
    out = tmp_path / "run"
    train_run(TrainOptions(**SMALL), out, make_plots=False)
    stored = json.loads((out / "options.json").read_text())["reinforcement"]
    sched = parse_reinforcement(stored)
    assert stored.startswith("auto:hidden=") and sched.start == 1.0 and sched.hidden > 1.0
    model = load_model(out / "model.npz")
    assert model.metadata["reinforcement_schedule"] == sched.to_spec()
    info = CliRunner().invoke(main, ["info", str(out / "model.npz")])
    assert f"reinforcement: {sched.to_spec()}" in info.output
    # resuming for more epochs keeps the schedule resolved for the first budget, whether asked
    # with 'auto' again (as a sweep does) or with the stored schedule
    for asked in ("auto", stored):
        longer = TrainOptions(**{**SMALL, "reinforcement": asked, "epochs": 4})
        train_run(longer, out, resume=True, make_plots=False)
    assert json.loads((out / "options.json").read_text())["reinforcement"] == stored
    assert load_model(out / "model.npz").metadata["reinforcement_schedule"] == sched.to_spec()


def test_an_old_run_folder_that_stored_auto_keeps_start_20(tmp_path):
    out = tmp_path / "old"
    train_run(TrainOptions(**{**SMALL, "reinforcement": None}), out, make_plots=False)
    path = out / "options.json"
    options = json.loads(path.read_text())
    options["reinforcement"] = "auto"  # as written before 'auto' was resolved at start
    path.write_text(json.dumps(options))
    longer = TrainOptions(**{**SMALL, "reinforcement": "auto", "epochs": 3})
    with pytest.warns(ReinforcementWarning, match="20 plain epochs"):
        train_run(longer, out, resume=True, make_plots=False)
    assert json.loads(path.read_text())["reinforcement"] == "auto"


def test_info_of_a_file_written_before_the_record(tmp_path):
    from ebprop.persist import schedule_ran

    assert schedule_ran({"estimator_params": {"reinforcement": "auto"}}).startswith(
        "auto (hidden=1.0001,start=20"
    )
    assert schedule_ran({"estimator_params": {"reinforcement": None}}) == "none"
    assert schedule_ran({"reinforcement_schedule": "hidden=1.0002,start=4.0"}) == (
        "hidden=1.0002,start=4.0"
    )
