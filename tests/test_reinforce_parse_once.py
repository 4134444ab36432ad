"""``reinforcement`` is parsed once per run (issue 34): the estimator and the run hold the
parsed schedule, not its string, after validating it.

Every module of ebprop that holds :func:`ebprop.core.parse_reinforcement` gets a counting spy;
a call with a value still to parse (not None, not already a ``Reinforcement``) is one parse.
Reading a model file back parses its stored header (``load_model``); those are counted apart.
"""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.base import clone
from sklearn.datasets import load_digits

import ebprop.core.reinforce as reinforce_module
import ebprop.runs.ebp as run_module
from ebprop import EBPClassifier
from ebprop.cli import main
from ebprop.core import Reinforcement, ReinforcementWarning
from ebprop.sweep import parse_experiment, run_sweep

SPEC = "hidden=1.0001,start=2"


class ParseSpy:
    """Counts top-level parses (the parser's own recursion is one parse), in and out of
    ``load_model``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[object] = []
        self.reading_model = 0
        self.in_model_files: list[object] = []
        self._depth = 0
        original = reinforce_module.parse_reinforcement

        def spy(value):
            if self._depth == 0 and value is not None and not isinstance(value, Reinforcement):
                (self.in_model_files if self.reading_model else self.calls).append(value)
            self._depth += 1
            try:
                return original(value)
            finally:
                self._depth -= 1

        holders = [
            m
            for name, m in list(sys.modules.items())
            if name.startswith("ebprop") and getattr(m, "parse_reinforcement", None) is original
        ]
        assert reinforce_module in holders and len(holders) >= 3  # core, params, persist
        for module in holders:
            monkeypatch.setattr(module, "parse_reinforcement", spy)
        load_model = run_module.load_model

        def reading(path):
            self.reading_model += 1
            try:
                return load_model(path)
            finally:
                self.reading_model -= 1

        monkeypatch.setattr(run_module, "load_model", reading)


@pytest.fixture
def spy(monkeypatch):
    return ParseSpy(monkeypatch)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300] / 16.0, y[:300]


def test_fit_over_several_epochs_parses_once(spy, digits):
    X, y = digits
    est = EBPClassifier(hidden_layer_sizes=(8,), max_iter=4, reinforcement=SPEC, random_state=0)
    est.fit(X, y)
    assert spy.calls == [SPEC]
    assert est.get_params()["reinforcement"] == SPEC  # scikit-learn's contract: as given
    assert est.reinforcement_ == Reinforcement(hidden=1.0001, start=2.0)
    assert est.n_iter_ == 4


def test_auto_is_parsed_once_and_resolved_once_at_the_start(spy, digits):
    X, y = digits
    est = EBPClassifier(hidden_layer_sizes=(8,), max_iter=4, reinforcement="auto", random_state=0)
    est.fit(X, y)
    assert spy.calls == ["auto"]
    assert est.reinforcement_.from_auto and est.reinforcement_.start == 2.0
    assert est.get_params()["reinforcement"] == "auto"


def test_partial_fit_parses_once_over_its_calls(spy, digits):
    X, y = digits
    est = EBPClassifier(hidden_layer_sizes=(8,), reinforcement="hidden=1.001", random_state=0)
    for _ in range(3):
        est.partial_fit(X, y, classes=np.arange(10))
    assert spy.calls == ["hidden=1.001"]
    assert est.n_iter_ == 3


def test_a_new_value_is_parsed_and_trains(spy, digits):
    # set_params and clone give a new value: parsed once more, and that schedule trains
    X, y = digits
    est = EBPClassifier(hidden_layer_sizes=(8,), max_iter=3, reinforcement=SPEC, random_state=0)
    est.fit(X, y)
    est.set_params(reinforcement="hidden=1.001,start=1")
    est.fit(X, y)
    assert est.reinforcement_ == Reinforcement(hidden=1.001, start=1.0)
    twin = clone(est).fit(X, y)
    assert spy.calls == [SPEC, "hidden=1.001,start=1", "hidden=1.001,start=1"]
    assert twin.get_params() == est.get_params()
    for a, b in zip(twin.coefs_, est.coefs_, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="^reinforcement 'hidden=fast': hidden='fast' is not"):
        est.set_params(reinforcement="hidden=fast").fit(X, y)


def test_a_cli_run_parses_its_option_once(spy, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--hidden", "8", "--epochs", "3", "--seed", "1", "--quiet"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReinforcementWarning)
        result = CliRunner().invoke(main, [*args, "--reinforcement", SPEC, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert spy.calls == [SPEC]
    # options.json and the model header store the schedule as its spec; the model file the
    # run reads back for its summary parses its own header (two fields), nothing more
    spec = Reinforcement(hidden=1.0001, start=2.0).to_spec()
    assert json.loads((out / "options.json").read_text())["reinforcement"] == spec
    assert spy.in_model_files == [spec, spec]


def test_a_resumed_run_parses_its_stored_option_once(spy, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--hidden", "8", "--epochs", "1", "--seed", "1", "--quiet"]
    result = CliRunner().invoke(main, [*args, "--reinforcement", "auto", "--out", str(out)])
    assert result.exit_code == 0, result.output
    stored = json.loads((out / "options.json").read_text())["reinforcement"]
    assert stored.startswith("auto:")  # resolved once, at the start, and stored so
    spy.calls.clear()
    result = CliRunner().invoke(main, ["train", "--resume", str(out), "--epochs", "2"])
    assert result.exit_code == 0, result.output
    # the command line reads options.json (to apply --epochs), the run reads it to check it:
    # one parse per read of the file, none after (the comparison takes the parsed values)
    assert spy.calls == [stored, stored]


def test_a_sweep_parses_each_runs_option_once(spy, tmp_path):
    # each run's value is parsed where the experiment is read; the run trains with and is
    # compared by that parsed value. What is parsed after is read from a file: the final
    # check reads each run's options.json (a model file read back parses its own header)
    toml = (
        f'name = "once"\n[settings]\nhidden = [8]\nepochs = 3\nreinforcement = "{SPEC}"\n'
        "[[grid]]\nseed = [1, 2]\n"
    )
    experiment = parse_experiment(toml)
    assert spy.calls == [SPEC, SPEC]
    result = run_sweep(experiment, tmp_path / "sweep")
    assert [o["status"] for o in result.outcomes] == ["done", "done"]
    stored = Reinforcement(hidden=1.0001, start=2.0).to_spec()
    assert spy.calls == [SPEC, SPEC, stored, stored]
    assert spy.in_model_files == [stored] * 4
    run = experiment.runs[0]
    options = json.loads((tmp_path / "sweep" / run.name / "options.json").read_text())
    assert options == run.options and options["reinforcement"] == stored
