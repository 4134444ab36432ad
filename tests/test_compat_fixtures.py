"""Files written before the options refactor still load, predict and resume bit for bit.

The fixtures under ``tests/fixtures/compat/`` were written once by
``tests/fixtures/make_compat_fixtures.py`` with the code of commit 0aaf391 (before issue 34),
together with what that code computed from them (``expected.npz``). Later code must reproduce
those arrays exactly: a changed default, a parameter no longer read from an old header or a
resume that trains differently all show up here.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from fixtures.make_compat_fixtures import MODELS, digits, outputs, params

from ebprop.persist import load_model
from ebprop.runs import train_run

COMPAT = Path(__file__).resolve().parent / "fixtures" / "compat"


@pytest.fixture(scope="module")
def expected():
    with np.load(COMPAT / "expected.npz") as f:
        return dict(f)


@pytest.mark.parametrize("stem", sorted(MODELS))
def test_old_models_load_and_predict_identically(stem, expected):
    est = load_model(COMPAT / f"{stem}.npz").estimator
    X, _ = digits()
    for key, value in outputs(est, X[:100]).items():
        np.testing.assert_array_equal(value, expected[f"{stem}.{key}"], err_msg=key)


@pytest.mark.parametrize("stem", sorted(MODELS))
def test_old_models_continue_training_identically(stem, expected):
    est = load_model(COMPAT / f"{stem}.npz").estimator
    X, y = digits()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the fixtures were written without a divergence
        est.partial_fit(X[600:900], y[600:900])
    got = params(est)
    assert len(got) == sum(k.startswith(f"{stem}.more_") for k in expected)
    for i, a in enumerate(got):
        np.testing.assert_array_equal(a, expected[f"{stem}.more_{i}"], err_msg=f"array {i}")


def test_old_models_keep_their_parameters():
    for stem, kw in MODELS.items():
        got = load_model(COMPAT / f"{stem}.npz").estimator.get_params()
        for key, value in kw.items():
            if key != "n_jobs":  # not stored by the old format: loads as the default
                assert (tuple(got[key]) if isinstance(value, tuple) else got[key]) == value, key


def test_an_old_interrupted_run_resumes_identically(tmp_path, expected):
    out = tmp_path / "run"
    shutil.copytree(COMPAT / "run", out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = train_run(None, out, resume=True, make_plots=False)
    assert summary["finished"]
    assert summary["best_epoch"] == int(expected["run.best_epoch"])
    last = params(load_model(out / "last.npz").estimator)
    assert len(last) == sum(k.startswith("run.last_") for k in expected)
    for i, a in enumerate(last):
        np.testing.assert_array_equal(a, expected[f"run.last_{i}"], err_msg=f"array {i}")
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    for key in ("train_error", "val_error_p", "val_error_d", "test_error_p", "test_error_d"):
        np.testing.assert_array_equal([r[key] for r in records], expected[f"run.{key}"], key)
