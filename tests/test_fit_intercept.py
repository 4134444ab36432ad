"""``fit_intercept=False``: layers without bias, end to end (core, estimator, runs, export)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ebprop import EBPClassifier, kernels
from ebprop.cli import main
from ebprop.core import init_network, make_family
from ebprop.core.forward import forward
from ebprop.datasets import Preprocessor, load_dataset
from ebprop.packed import PackedNetwork
from ebprop.packed.fileformat import read_packed
from ebprop.persist import load_model, save_model
from ebprop.trainer import uses_fused_loop


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    pre = Preprocessor().fit(ds.X_train, ds.max_value)
    return ds, pre, pre.transform(ds.X_train), pre.transform(ds.X_test)


def test_forward_without_intercept_matches_the_formula():
    """z = ⟨v⟩M / √(Σ_j Var(W_j v_j)), computed here from the moments; no +1, no b, c = n_in."""
    rng = np.random.default_rng(0)
    for weights in ("binary", "real"):
        fam = make_family(weights, 0.7)
        net = init_network((5, 4, 3), fam, rng, 2.0, np.float64, fit_intercept=False)
        for b in net.b:
            b[...] = 5.0  # must not be read
        x = rng.normal(size=(6, 5))
        stats = forward(net, x)
        M, EW2 = net.M, [net.M2[0] + (0.7 if weights == "real" else 1 - net.M2[0])]
        EW2.append(net.M2[1] + (0.7 if weights == "real" else 1 - net.M2[1]))
        var0 = (x**2) @ EW2[0] - (x**2) @ net.M2[0]
        np.testing.assert_allclose(stats[0].z, (x @ M[0]) / np.sqrt(var0), rtol=1e-10)
        v = stats[0].v
        var1 = np.ones_like(v) @ EW2[1] - (v**2) @ net.M2[1]
        np.testing.assert_allclose(stats[1].z, (v @ M[1]) / np.sqrt(var1), rtol=1e-10)
        assert stats[0].fan_in == 5 and stats[1].fan_in == 4
        with_bias = init_network((5, 4, 3), fam, np.random.default_rng(1), 2.0, np.float64)
        assert forward(with_bias, x)[0].fan_in == 6  # the paper's c = n_in + 1


def test_a_zero_input_row_gives_z_zero_not_nan():
    fam = make_family("binary", 1.0)
    net = init_network((4, 3, 2), fam, np.random.default_rng(0), 1.0, np.float32,
                       fit_intercept=False)  # fmt: skip
    z = forward(net, np.zeros((2, 4), np.float32))[0].z
    assert np.all(z == 0)


@pytest.mark.parametrize("weights", ["binary", "real"])
def test_without_intercept_biases_stay_zero_and_the_model_learns(digits, weights):
    ds, _, X, X_test = digits
    est = EBPClassifier(hidden_layer_sizes=(64,), weights=weights, fit_intercept=False,
                        batch_size=1, max_iter=3, random_state=0, n_jobs=1)  # fmt: skip
    est.fit(X, ds.y_train)
    for b in est.intercepts_:
        assert np.all(b == 0)
    accuracy = np.mean(est.predict(X_test) == ds.y_test)
    assert accuracy > 0.85, accuracy  # chance is 0.1
    # n_jobs=1: the compiled loop where numba runs (it implements layers without bias); the
    # NumPy core (n_jobs=0, the reference) trains the same network to float round-off
    assert uses_fused_loop(est.network(), 10**9, 1) == kernels.available()
    same = EBPClassifier(**(est.get_params() | {"n_jobs": 0})).fit(X, ds.y_train)
    for a, b in zip(est.coefs_ + est.intercepts_, same.coefs_ + same.intercepts_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)  # 3 epochs of batch 1: 1e-5 apart
    assert np.mean(est.predict(X_test) == same.predict(X_test)) > 0.99


def test_the_intercept_changes_training(digits):
    ds, _, X, _ = digits
    kw = dict(hidden_layer_sizes=(16,), max_iter=1, random_state=0, batch_size=1)
    a = EBPClassifier(**kw).fit(X, ds.y_train)
    b = EBPClassifier(**kw, fit_intercept=False).fit(X, ds.y_train)
    assert any(np.any(i != 0) for i in a.intercepts_)
    assert not np.array_equal(a.coefs_[0], b.coefs_[0])


def test_saved_loaded_and_exported_without_intercept(digits, tmp_path):
    ds, pre, X, X_test = digits
    est = EBPClassifier(hidden_layer_sizes=(32,), fit_intercept=False, batch_size=1,
                        max_iter=2, random_state=0)  # fmt: skip
    est.fit(X, ds.y_train)
    path = tmp_path / "model.npz"
    save_model(path, est, pre, {"training_options": {"dataset": "digits"}})
    loaded = load_model(path).estimator
    assert loaded.fit_intercept is False
    np.testing.assert_array_equal(loaded.predict_proba(X_test), est.predict_proba(X_test))
    out = tmp_path / "m.ebpb"
    res = CliRunner().invoke(main, ["export", str(path), "-o", str(out)])
    assert res.exit_code == 0, res.output
    for t in read_packed(out).thresholds:
        assert np.all(t == 0)  # no bias: every unit fires iff its ±1 dot product is >= 0
    ref = est.predict(X_test, readout="deterministic")
    np.testing.assert_array_equal(PackedNetwork.load(out).predict(ds.X_test), ref)


def test_conv_architectures_refuse_it():
    with pytest.raises(ValueError, match="fit_intercept=False supports fully connected"):
        EBPClassifier(architecture="4C3-MP2-8", fit_intercept=False).check_params()


def test_the_cli_flag_reaches_the_run_and_its_model(tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(
        main,
        ["train", "--no-fit-intercept", "--hidden", "32", "--batch-size", "1", "--epochs", "1",
         "--out", str(out), "--quiet"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads((out / "options.json").read_text())["fit_intercept"] is False
    est = load_model(out / "model.npz").estimator
    assert est.fit_intercept is False and all(np.all(b == 0) for b in est.intercepts_)
