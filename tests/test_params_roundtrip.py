"""Every declared parameter reaches every home it has from its declaration alone.

Issue 34: a new estimator parameter should need its declaration (:data:`ebprop.params.PARAMS`),
the estimator's constructor and docstring, the core code that uses it, and a test. These tests
hold the rest to that: for each declared parameter, with a value drawn from its constraint (or
its declared ``example``), it is carried through the run options and ``options.json``, resuming
and old run folders, a sweep grid (as a setting and as an axis that names the runs), the
``ebprop train`` command line and the runs table's recipe, and a model file. Nothing here names
a parameter: a new one is tested as soon as it is declared.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from ebprop import EBPClassifier, load_model, save_model
from ebprop.cli.train import train
from ebprop.constraints import Either
from ebprop.core import init_network, make_family
from ebprop.core.network import OPTION, Network
from ebprop.params import NOT_SAVED, PARAMS, Boolean, Choice, Integer, Nullable, Param, Real
from ebprop.runs import TrainOptions
from ebprop.runs.folder import RESUMABLE_CHANGES, differing_options
from ebprop.sweep import parse_experiment
from ebprop.sweep.tables import recipe_flags

OPTIONS = {p.option: p for p in PARAMS.values() if p.option is not None}
FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainOptions)}


def _draw(check, default):
    """A valid value other than ``default`` from one of :mod:`ebprop.constraints`."""
    if isinstance(check, Nullable):
        return _draw(check.inner, default)
    if isinstance(check, Either):
        return _draw(check.kinds[0], default)
    if isinstance(check, Choice):
        return next(c for c in check.choices if c != default)
    if isinstance(check, Boolean):
        return not default
    if isinstance(check, Integer):
        low = 0 if check.low is None else check.low
        return next(v for v in (low + 1, low + 2) if v != default)
    if isinstance(check, Real):
        if check.high is None:
            return 2.0 * default if isinstance(default, float) and default > 0 else 1.5
        return next(v for v in (0.5, 0.25) if v != default) * (check.high - check.low) + (check.low)
    raise AssertionError(f"cannot draw a value from {check!r}: declare example= with the parameter")


def _example(p: Param):
    return p.example if p.example is not None else _draw(p.check, p.default)


def _with(p: Param) -> dict:
    """The other options its example needs (a rule between parameters)."""
    return dict(p.example_with or {})


def _stored(option: str, value):
    """The value as ``options.json`` stores it."""
    return OPTIONS[option].to_json(OPTIONS[option].validate(value, option))


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_every_parameter_has_a_valid_example_other_than_its_default(name):
    p = PARAMS[name]
    value = _example(p)
    assert p.to_json(p.validate(value)) != p.to_json(p.validate(p.default))


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_run_options_store_resume_and_build_the_estimator(option):
    p, value = OPTIONS[option], _example(OPTIONS[option])
    opts = TrainOptions(**_with(p), **{option: value})
    stored = json.loads(json.dumps(opts.to_dict()))  # options.json
    assert stored[option] == _stored(option, value)
    assert TrainOptions.from_dict(stored) == opts
    params = opts.estimator_params()
    assert p.to_json(p.validate(params[p.name])) == stored[option]
    EBPClassifier(**params).check_params()
    # resuming compares it; a run folder written before it existed means its default
    default = TrainOptions().to_dict()
    differ = differing_options(stored, default)
    assert (option in differ) is (option not in RESUMABLE_CHANGES), differ
    if FIELD_DEFAULTS[option] == p.default:  # (hidden: the run's default is not the estimator's)
        older = {k: v for k, v in default.items() if k != option}
        assert differing_options(default, older) == []


def _toml(value) -> str:
    return (
        "'none'"
        if value is None
        else json.dumps(list(value) if isinstance(value, tuple) else value)
    )


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_a_sweep_grid_sets_it_and_names_the_runs_of_its_axis(option):
    value = _example(OPTIONS[option])
    settings = "".join(f"{k} = {_toml(v)}\n" for k, v in _with(OPTIONS[option]).items())
    exp = parse_experiment(f"[[grid]]\n{settings}{option} = {_toml(value)}\n")
    assert exp.runs[0].options[option] == _stored(option, value)
    default = FIELD_DEFAULTS[option]
    axis = [[*value], [*default]] if option == "hidden" else [value, default]
    exp = parse_experiment(f"[[grid]]\n{settings}{option} = [{', '.join(map(_toml, axis))}]\n")
    assert [r.options[option] for r in exp.runs] == [_stored(option, v) for v in axis]
    assert len({r.name for r in exp.runs}) == 2


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_the_command_line_and_the_recipe_give_the_same_options(option):
    value, context = _example(OPTIONS[option]), _with(OPTIONS[option])
    stored = TrainOptions(**context, **{option: value}).to_dict()
    flags = recipe_flags(stored)
    flag = "--" + option.replace("_", "-")
    if not any(f.startswith(flag) or f == "--no-" + flag[2:] for f in flags):
        # shown in its own column (network, weights) or a budget: spelled out here
        assert option in {"hidden", "architecture", "weights", "max_memory"}, flags
        v = stored[option]
        flags = [flag, *map(str, v)] if isinstance(v, list) else [flag, str(v)]
    for k, v in context.items():  # the network is its own column, not the recipe's
        flags += ["--" + k.replace("_", "-"), str(v)]
    ctx = train.make_context("train", flags)
    given = {k: v for k, v in ctx.params.items() if k in FIELD_DEFAULTS and v is not None}
    assert TrainOptions(**given).to_dict()[option] == stored[option], flags


def _digits():
    X, y = load_digits(return_X_y=True)
    return (X[:300] / 16.0).astype(np.float32), y[:300]


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_a_model_file_keeps_it(name, tmp_path):
    p, value = PARAMS[name], _example(PARAMS[name])
    params = {"max_iter": 1, "random_state": 0, "hidden_layer_sizes": (4,), name: value}
    params |= _with(p)
    if name in ("architecture", "input_shape") or "architecture" in params:
        params.pop("hidden_layer_sizes")
        params.setdefault("architecture", "2C3-8")
    X, y = _digits()
    est = EBPClassifier(**params).fit(X, y)
    save_model(tmp_path / "m.npz", est)
    loaded = load_model(tmp_path / "m.npz").estimator.get_params()[name]
    expected = p.default if name in NOT_SAVED else value
    assert p.to_json(p.validate(loaded)) == p.to_json(p.validate(expected))


@dataclasses.dataclass
class _Wider(Network):
    """The core's network with one more option, as a new ``network=True`` parameter adds it."""

    shiny: bool = dataclasses.field(default=False, kw_only=True, metadata=OPTION)


def test_a_new_network_option_trains_in_the_numpy_core_until_the_kernels_implement_it():
    pytest.importorskip("numba")  # what the compiled loop needs; the route is its decision
    from ebprop import kernels
    from ebprop.trainer import engine_reason

    base = init_network((64, 8, 10), make_family("binary"), np.random.default_rng(0))
    plain = _Wider(base.family, base.H, base.b, base.M, base.M2)
    shiny = _Wider(base.family, base.H, base.b, base.M, base.M2, shiny=True)
    assert plain.changed_options() == frozenset() and kernels.available()
    assert shiny.changed_options() == {"shiny"}
    assert kernels.supports(plain) and not kernels.supports(shiny)
    reason = engine_reason(shiny, 10**9, 1)
    assert reason == "the compiled loop implements shiny at its default only"
    # an option the kernels do implement away from its default (fused.IMPLEMENTED_OPTIONS)
    no_bias = init_network((64, 8, 10), make_family("real"), np.random.default_rng(0),
                           fit_intercept=False)  # fmt: skip
    assert no_bias.changed_options() == {"fit_intercept"} and kernels.supports(no_bias)
    assert engine_reason(no_bias, 10**9, 1) is None
    both = _Wider(base.family, base.H, base.b, base.M, base.M2, fit_intercept=False, shiny=True)
    assert not kernels.supports(both)  # one option they do not implement is enough
    assert engine_reason(both, 10**9, 1) == "the compiled loop implements shiny at its default only"
