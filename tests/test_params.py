"""The parameter declarations: one per estimator parameter, one message per bad value."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from click.testing import CliRunner

from ebprop import EBPClassifier
from ebprop.baselines import BaselineOptions
from ebprop.cli import main
from ebprop.core import Reinforcement
from ebprop.params import (
    NOT_SAVED,
    PARAMS,
    Boolean,
    Choice,
    Integer,
    Nullable,
    Param,
    Real,
    check_option,
    loaded_params,
    option_params,
    saved_params,
)
from ebprop.persist import estimator_params
from ebprop.runs import TrainOptions
from ebprop.sweep import ExperimentError, parse_experiment


def test_every_constructor_parameter_is_declared_once_with_its_default():
    sig = inspect.signature(EBPClassifier.__init__).parameters
    names = [n for n in sig if n != "self"]
    assert sorted(names) == sorted(PARAMS)
    for name in names:
        assert PARAMS[name].default == sig[name].default, name
        assert PARAMS[name].doc.strip(), name
        # the class docstring documents it (numpy style: "name : type")
        doc = EBPClassifier.__doc__
        assert f"\n    {name} :" in doc or f"\n    {name}," in doc or f", {name} :" in doc, name


@pytest.mark.parametrize(
    ("option", "param", "value", "message"),
    [
        ("batch_size", "batch_size", 0, "must be a positive integer (>= 1), got 0"),
        ("epochs", "max_iter", 2.5, "must be a positive integer (>= 1), got 2.5"),
        ("hidden", "hidden_layer_sizes", (3, 0), "must be hidden layer widths, each a positive"),
        ("input_dropout", "input_dropout", 0.0, "must be a keep probability in (0, 1] or None"),
        ("init_variance", "init_variance", -1.0, "must be a positive finite number, got -1.0"),
        ("weights", "weights", "ternary", "must be 'binary' or 'real', got 'ternary'"),
        ("jobs", "n_jobs", -1, "must be an integer >= 0 or 'auto' or None, got -1"),
        ("dtype", "dtype", "float16", "must be 'float32' or 'float64', got 'float16'"),
        ("dtype", "dtype", "x", "must be 'float32' or 'float64', got 'x'"),
        ("reinforcement", "reinforcement", "zz", "'zz': expected a number, 'auto' or key=value"),
        ("reinforcement", "reinforcement", -1.0, "hidden factor must be a number in [0.5, 2]"),
    ],
)
def test_one_message_per_bad_value_from_the_estimator_and_the_run_options(
    option, param, value, message
):
    with pytest.raises(ValueError) as est_err:
        EBPClassifier(**{param: value}).check_params()
    with pytest.raises(ValueError) as opt_err:
        TrainOptions(**{option: value})
    assert str(est_err.value) == f"{param} {message}" or str(est_err.value).startswith(
        f"{param} {message}"
    )
    assert str(opt_err.value).startswith(f"{option} {message}")
    # the same words after the name: one message, whoever passed the value
    assert str(est_err.value).split(" ", 1)[1] == str(opt_err.value).split(" ", 1)[1]


@pytest.mark.parametrize(
    ("flag", "text", "toml", "message"),
    [
        ("--hidden", "3,0", "[3, 0]",
         "hidden must be hidden layer widths, each a positive integer (>= 1), got (3, 0)"),
        ("--reinforcement", "zz", "'zz'",
         "reinforcement 'zz': expected a number, 'auto' or key=value pairs with keys hidden, "
         "output, start, ramp, stop (e.g. 'hidden=1.0001,start=1')"),
    ],
)  # fmt: skip
def test_the_command_line_and_the_sweep_give_the_declarations_message(
    flag, text, toml, message, tmp_path
):
    option = flag.removeprefix("--")
    with pytest.raises(ValueError) as opt_err:
        TrainOptions(**{option: tuple(map(int, text.split(","))) if option == "hidden" else text})
    assert str(opt_err.value) == message
    result = CliRunner().invoke(
        main, ["train", flag, text, "--epochs", "1", "--out", str(tmp_path / "run")]
    )
    assert result.exit_code == 2 and f"Error: {message}\n" in result.output, result.output
    assert not (tmp_path / "run").exists()
    with pytest.raises(ExperimentError) as sweep_err:
        parse_experiment(f"[[grid]]\n{option} = {toml}\n")
    assert str(sweep_err.value) == f"<experiment>: grid 1: {message}"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("zz", "'zz': expected a number, 'auto' or key=value pairs with keys hidden, output, "
         "start, ramp, stop (e.g. 'hidden=1.0001,start=1')"),
        (-1.0, "hidden factor must be a number in [0.5, 2] (ρ per minibatch, e.g. 1.00005), "
         "got -1.0"),
        ("hidden=1.1,hidden=1.2", "'hidden=1.1,hidden=1.2': hidden is given twice; give each "
         "key once"),
        ("hidden=x", "'hidden=x': hidden='x' is not a number; give a number there"),
        ([1], "must be a number, 'auto' or 'key=value,…'; got [1]"),
        ("start=-1", "start must be ≥ 0 epochs, got -1.0"),
        ("start=2,stop=1", "stop must be an epoch after start (2), got 1.0"),
    ],
)  # fmt: skip
def test_a_bad_reinforcement_is_refused_in_one_sentence_that_names_it_once(value, message):
    with pytest.raises(ValueError) as est_err:
        EBPClassifier(reinforcement=value).check_params()
    with pytest.raises(ValueError) as opt_err:
        TrainOptions(reinforcement=value)
    assert str(est_err.value) == str(opt_err.value) == f"reinforcement {message}"


def test_a_dtype_that_is_not_a_float_type_is_refused_before_fitting():
    X = np.random.default_rng(0).normal(size=(20, 3))
    y = np.arange(20) % 2
    for dtype in ("x", None, "int32"):
        with pytest.raises(
            ValueError, match=rf"^dtype must be 'float32' or 'float64', got {dtype!r}$"
        ):
            EBPClassifier(hidden_layer_sizes=(3,), max_iter=1, dtype=dtype).fit(X, y)
        with pytest.raises(
            ValueError, match=rf"^dtype must be 'float32' or 'float64', got {dtype!r}$"
        ):
            TrainOptions(dtype=dtype)
    assert EBPClassifier(dtype=np.float64).check_params() == ((200,), None)


def test_shared_options_validate_through_the_declarations_for_the_baselines_too():
    with pytest.raises(ValueError, match=r"^batch_size must be a positive integer \(>= 1\)"):
        BaselineOptions(method="bp", batch_size=0)
    with pytest.raises(ValueError) as base_err:
        BaselineOptions(method="bp", fit_intercept="no")
    with pytest.raises(ValueError) as ebp_err:
        TrainOptions(fit_intercept="no")
    assert (
        str(base_err.value) == str(ebp_err.value) == "fit_intercept must be True or False, got 'no'"
    )


def test_the_run_holds_the_parsed_schedule_and_stores_its_json_form():
    o = TrainOptions(reinforcement="hidden=1.001,start=2")
    assert o.reinforcement == Reinforcement(hidden=1.001, start=2.0)
    assert o.to_dict()["reinforcement"] == "hidden=1.001,output=1.0,start=2.0,ramp=0.0"
    assert TrainOptions(reinforcement=1.0005).to_dict()["reinforcement"] == 1.0005  # as before
    assert TrainOptions(reinforcement="none").reinforcement is None
    assert TrainOptions.from_dict(o.to_dict()) == o
    est = EBPClassifier(**o.estimator_params())
    assert est.reinforcement is o.reinforcement  # handed on, not re-parsed from a string


def test_reinforcement_is_parsed_once_per_run(tmp_path, monkeypatch):
    """The options parse the string; the estimator, trainer and loops get the schedule. The
    finished run reads its saved model back (for the report), which parses the file's copy."""
    import traceback

    import ebprop.param_parsers
    from ebprop.runs import train_run

    real, parsed = ebprop.param_parsers.parse_reinforcement, []

    def counting(value):
        if not (value is None or isinstance(value, Reinforcement)):  # text or number → schedule
            stack = {f.name for f in traceback.extract_stack()}
            parsed.append(("load_model" in stack, value))
        return real(value)

    monkeypatch.setattr(ebprop.param_parsers, "parse_reinforcement", counting)
    options = TrainOptions(hidden=(8,), epochs=2, reinforcement="hidden=1.0001,start=1")
    train_run(options, tmp_path / "run", make_plots=False)
    assert parsed[0] == (False, "hidden=1.0001,start=1")
    assert all(from_file for from_file, _ in parsed[1:])  # only reading model files back
    assert len(parsed) <= 2


def test_every_field_of_the_run_options_that_is_declared_reaches_the_estimator():
    params = TrainOptions().estimator_params()
    for option, p in option_params().items():
        assert p.name in params, option
    EBPClassifier(**params).check_params()


def test_model_files_store_get_params_but_the_deny_list():
    X = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
    y = np.arange(40) % 3
    est = EBPClassifier(hidden_layer_sizes=(4,), max_iter=1, random_state=0).fit(X, y)
    stored = estimator_params(est)
    assert set(stored) == set(est.get_params()) - NOT_SAVED
    assert stored["hidden_layer_sizes"] == [4]
    assert saved_params({"random_state": np.random.default_rng(1)}) == {"random_state": None}


def test_old_files_load_with_the_defaults_in_force_when_they_were_written(monkeypatch):
    new = Param("shiny", True, Boolean(), "A newer behaviour.", since=("0.3.0", False))
    monkeypatch.setitem(PARAMS, "shiny", new)
    assert loaded_params({}, "0.2.9")["shiny"] is False
    assert loaded_params({}, "0.3.0")["shiny"] is True
    assert loaded_params({}, None)["shiny"] is True  # unknown writer: today's default
    assert loaded_params({"shiny": False}, "9.0")["shiny"] is False  # stored values win
    assert "n_jobs" not in loaded_params({}, "0.1.0")


@pytest.mark.parametrize(
    ("constraint", "good", "bad"),
    [
        (Integer(1), [1, np.int64(7)], [0, True, 1.0, "1"]),
        (Integer(0, 3), [0, 3], [-1, 4]),
        (Real(0.0, 1.0, "right"), [1.0, 0.5, 1], [0.0, 1.5, float("nan"), True, "0.5"]),
        (Real(0.0, None, "neither"), [1e-9, 1e9], [0.0, float("inf"), -1.0]),
        (Choice("a", "b"), ["a", "b"], ["c", None, ["a"]]),
        (Boolean(), [True, np.bool_(False)], [0, 1, "true", None]),
        (Nullable(Integer(1)), [None, 2], [0]),
    ],
)
def test_constraints_accept_and_refuse(constraint, good, bad):
    for v in good:
        constraint(v)
    for v in bad:
        with pytest.raises(ValueError):
            constraint(v)


def test_check_option_names_the_option():
    with pytest.raises(ValueError, match=r"^epochs must be a positive integer"):
        check_option("epochs", 0)
