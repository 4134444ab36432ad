"""``input_gain``: the preprocessor's gain g on the scaled features.

For EBP, inputs g·x are a first layer on x whose bias has variance 1/g² (docs/conv.md, "Input
gain"): checked against a transcription of one EBP step written that way. The exported sign
network folds g into the first thresholds: packed predictions equal EBP-D on every digit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import special

from ebprop import EBPClassifier
from ebprop.baselines.options import BaselineOptions
from ebprop.cli import main
from ebprop.datasets import Preprocessor, load_dataset
from ebprop.packed import PackedNetwork, pack_estimator
from ebprop.persist import save_model
from ebprop.reference import baseline_step
from ebprop.runs import TrainOptions
from ebprop.sweep.tables import recipe_flags


def _step_with_bias_variance(H, b, x, y, s2):
    """One binary EBP step written for a first-layer bias of variance s2 (the others 1): the
    bias adds s2 to the first layer's σ²c and moves by s2 · ½ΣΔ. A transcription of the
    reference's equations with that one change; updates H and b in place."""
    M = [np.tanh(h) for h in H]
    ms, zs, scales = [x], [], []
    for layer in range(len(H)):
        m = ms[-1]
        if layer == 0:
            var = (x * x).sum(axis=1)[:, None] - (x * x) @ (M[0] * M[0]) + s2
        else:
            var = m.shape[1] - (m * m) @ (M[layer] * M[layer]) + 1.0
        z = (m @ M[layer] + b[layer]) / np.sqrt(var)
        ms.append(special.erf(z / np.sqrt(2)))
        zs.append(z)
        scales.append(np.sqrt(var))
    phi_over_cdf = np.sqrt(2 / np.pi) / special.erfcx(-(y * zs[-1]) / np.sqrt(2))
    deltas = [2 * y * phi_over_cdf / scales[-1]]
    for layer in range(len(H) - 2, -1, -1):
        phi = np.exp(-(zs[layer] ** 2) / 2) / np.sqrt(2 * np.pi)
        deltas.insert(0, (deltas[0] @ M[layer + 1].T) * 2 * phi / scales[layer])
    for layer in range(len(H)):
        H[layer] += 0.5 * (ms[layer].T @ deltas[layer])
        b[layer] += (s2 if layer == 0 else 1.0) * 0.5 * deltas[layer].sum(axis=0)


@pytest.mark.parametrize("gain", [0.5, 3.0, 10.0])
def test_gain_is_a_first_layer_bias_of_variance_one_over_gain_squared(gain):
    rng = np.random.default_rng(1)
    sizes = (12, 7, 5, 3)
    x = rng.uniform(-1, 1, size=(6, sizes[0]))
    y = np.where(rng.random((6, sizes[-1])) < 0.5, -1.0, 1.0)
    H = [rng.normal(scale=1.5, size=(a, c)) for a, c in zip(sizes[:-1], sizes[1:], strict=True)]
    b = [rng.normal(size=c) for c in sizes[1:]]
    H_gain, b_gain = [h.copy() for h in H], [c.copy() for c in b]
    for _ in range(3):  # the reference EBP step on g·x, biases as trained on g·x
        baseline_step(H_gain, b_gain, gain * x, y, binary=True)
    H_var, b_var = [h.copy() for h in H], [c.copy() for c in b]
    b_var[0] /= gain  # the same network on x: first-layer bias b/g, variance 1/g²
    for _ in range(3):
        _step_with_bias_variance(H_var, b_var, x, y, 1.0 / gain**2)
    for got, want in zip(H_gain, H_var, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b_gain[0] / gain, b_var[0], rtol=1e-10, atol=1e-12)
    for got, want in zip(b_gain[1:], b_var[1:], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert not np.allclose(H_gain[0], H[0])  # the steps moved the weights


@pytest.mark.parametrize("scaling", ["unit", "symmetric", "standard"])
def test_preprocessor_multiplies_the_scaled_features(scaling):
    ds = load_dataset("digits")
    plain = Preprocessor(scaling=scaling).fit(ds.X_train, ds.max_value)
    gained = Preprocessor(scaling=scaling, input_gain=2.5).fit(ds.X_train, ds.max_value)
    np.testing.assert_allclose(
        gained.transform(ds.X_test), 2.5 * plain.transform(ds.X_test), rtol=1e-6
    )
    assert "input_gain=2.5" in repr(gained)


def test_state_keeps_the_gain_and_old_states_mean_gain_one():
    ds = load_dataset("digits")
    pre = Preprocessor(scaling="symmetric", input_gain=3.0).fit(ds.X_train, ds.max_value)
    meta, arrays = pre.get_state()
    assert meta["input_gain"] == 3.0
    again = Preprocessor.from_state(json.loads(json.dumps(meta)), arrays)
    np.testing.assert_array_equal(again.transform(ds.X_test), pre.transform(ds.X_test))
    plain_meta, plain_arrays = Preprocessor().fit(ds.X_train, ds.max_value).get_state()
    assert "input_gain" not in plain_meta  # the default keeps the state format of before
    assert Preprocessor.from_state(plain_meta, plain_arrays).input_gain == 1.0


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "3", True])
def test_bad_gains_are_refused_in_one_line(bad):
    with pytest.raises(ValueError, match=r"^input_gain must be a positive finite number, got"):
        Preprocessor(input_gain=bad)
    with pytest.raises(ValueError, match=r"^input_gain must be a positive finite number, got"):
        TrainOptions(input_gain=bad)
    meta, arrays = Preprocessor().fit(np.zeros((2, 4, 4)), 1).get_state()
    with pytest.raises(ValueError, match="Preprocessor state: input_gain must be"):
        Preprocessor.from_state({**meta, "input_gain": bad}, arrays)


def test_run_option_round_trips_and_names_itself_in_the_recipe():
    opts = TrainOptions(dataset="digits", input_gain=3)
    assert opts.input_gain == 3.0 and isinstance(opts.input_gain, float)
    d = opts.to_dict()
    assert TrainOptions.from_dict(d).input_gain == 3.0
    assert recipe_flags(d)[-2:] == ["--input-gain", "3"]
    assert "--input-gain" not in recipe_flags(TrainOptions(dataset="digits").to_dict())


def test_every_baseline_takes_a_gain_under_its_one_constraint():
    for method in ("bp", "binaryconnect", "binarynet"):
        assert BaselineOptions(method=method, input_gain=3).input_gain == 3.0
    with pytest.raises(ValueError, match=r"^input_gain must be a positive finite number, got"):
        BaselineOptions(method="binarynet", input_gain=0)


@pytest.mark.parametrize(
    ("architecture", "hidden", "scaling"),
    [("6C3-MP2-16", (), "symmetric"), ("6C3p1-MP2-16", (), "unit"), (None, (64,), "symmetric")],
)
def test_packed_network_folds_the_gain_and_equals_ebp_d(architecture, hidden, scaling):
    ds = load_dataset("digits")
    pre = Preprocessor(scaling=scaling, input_gain=3.0).fit(ds.X_train, ds.max_value)
    kwargs = {"architecture": architecture} if architecture else {"hidden_layer_sizes": hidden}
    est = EBPClassifier(max_iter=4, random_state=0, **kwargs)
    est.fit(pre.transform(ds.X_train), ds.y_train)
    X = np.concatenate([ds.X_train, ds.X_test])
    reference = est.predict(pre.transform(X), readout="deterministic")
    model = pack_estimator(est, pre)
    np.testing.assert_array_equal(PackedNetwork(model).predict(X), reference)
    assert np.mean(reference[len(ds.X_train) :] == ds.y_test) > 0.3  # chance: 0.1
    # the gain is folded: read at gain 1, the same biases give other first-layer thresholds
    plain = pack_estimator(est, Preprocessor(scaling=scaling).fit(ds.X_train, ds.max_value))
    assert not np.array_equal(plain.thresholds[0], model.thresholds[0])
    for deeper, same in zip(plain.thresholds[1:], model.thresholds[1:], strict=True):
        np.testing.assert_array_equal(deeper, same)


def test_train_flag_error_is_one_line(tmp_path):
    res = CliRunner().invoke(
        main, ["train", "--dataset", "digits", "--input-gain", "0", "--out", str(tmp_path / "r")]
    )
    assert res.exit_code == 2  # a usage error: click's usage lines, then the one-line reason
    assert res.output.strip().splitlines()[-1] == (
        "Error: input_gain must be a positive finite number, got 0.0"
    )
    assert not (tmp_path / "r").exists()


def test_info_names_the_gain(tmp_path):
    ds = load_dataset("digits")
    pre = Preprocessor(scaling="symmetric", input_gain=3.0).fit(ds.X_train, ds.max_value)
    est = EBPClassifier(hidden_layer_sizes=(8,), max_iter=1, random_state=0)
    est.fit(pre.transform(ds.X_train), ds.y_train)
    save_model(tmp_path / "m.npz", est, pre, {})
    res = CliRunner().invoke(main, ["info", str(tmp_path / "m.npz")])
    assert res.exit_code == 0, res.output
    assert "(scaling symmetric, filters none, deskew off, input gain 3)" in res.output
