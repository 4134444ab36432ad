"""Conv models in model files: round trip, header fields, MLP files unchanged, bad headers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from sklearn.datasets import load_digits

from ebprop import EBPClassifier
from ebprop.exceptions import ModelFormatError
from ebprop.fileio import decode_header, encode_header, read_npz
from ebprop.persist import load_model, save_model


@pytest.fixture(scope="module")
def fitted():
    X, y = load_digits(return_X_y=True)
    X = X[:300] / 16.0
    est = EBPClassifier(architecture="6C3p1-MP2-32", max_iter=1, random_state=0).fit(X, y[:300])
    return est, X


def test_a_conv_model_round_trips_and_continues_training(tmp_path, fitted):
    est, X = fitted
    path = tmp_path / "m.npz"
    save_model(path, est)
    header = load_model(path).metadata
    assert header["architecture"]["layers"] == "6C3p1-MP2-32"
    assert header["architecture"]["input_shape"] == [8, 8, 1]
    assert header["architecture"]["sizes"] == [64, 6, 32, 10]
    loaded = load_model(path).estimator
    assert loaded.architecture == "6C3p1-MP2-32" and loaded.n_features_in_ == 64
    for readout in ("probabilistic", "deterministic"):
        np.testing.assert_array_equal(loaded.decision_function(X, readout),
                                      est.decision_function(X, readout))  # fmt: skip
    y = np.arange(X.shape[0]) % 10
    copies = [copy.deepcopy(est), load_model(path).estimator, loaded]
    for c in copies:
        c._rng = np.random.default_rng(5)
        c.partial_fit(X, y)
    for c in copies[1:]:
        assert all(np.array_equal(p, q) for p, q in zip(copies[0].coefs_, c.coefs_, strict=True))


def test_mlp_headers_have_no_conv_fields(tmp_path):
    X, y = load_digits(return_X_y=True)
    est = EBPClassifier(hidden_layer_sizes=(32,), max_iter=1, random_state=0).fit(X / 16, y)
    save_model(tmp_path / "m.npz", est)
    arch = load_model(tmp_path / "m.npz").metadata["architecture"]
    assert set(arch) == {"sizes", "weights", "dtype"}


def _rewrite(path, change):
    arrays = read_npz(path, what="model")
    header = decode_header(arrays.pop("header"), str(path))
    change(header)
    np.savez(path, header=encode_header(header), **arrays)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda h: h["architecture"].update(layers="6C3p1-MQ2-32"), "'MQ2'"),
        (lambda h: h["architecture"].pop("input_shape"), "malformed"),
        (lambda h: h["architecture"].update(layers="6C5p1-MP2-32"), r"needs \(25, 6\)"),
        (lambda h: h["architecture"].update(layers="6C3p1-MP2-32-32"), "has 4 layers"),
    ],
)
def test_bad_conv_headers_name_the_file(tmp_path, fitted, change, match):
    path = tmp_path / "m.npz"
    save_model(path, fitted[0])
    _rewrite(path, change)
    with pytest.raises(ModelFormatError, match=match) as info:
        load_model(path)
    assert str(path) in str(info.value)


@pytest.fixture(scope="module")
def weighted():
    X, y = load_digits(return_X_y=True)
    X = X[:300] / 16.0
    est = EBPClassifier(
        architecture="6C3p1-MP2-32", conv_bias_step="precision", max_iter=1, random_state=0
    ).fit(X, y[:300])
    return est, X


def test_conv_bias_precisions_round_trip_and_training_continues_from_them(tmp_path, weighted):
    est, X = weighted
    tau = est.conv_bias_precisions_
    assert [t.shape for t in tau] == [(6,), (32,), (10,)] and np.all(tau[0] > 1.0)
    save_model(tmp_path / "m.npz", est)
    loaded = load_model(tmp_path / "m.npz").estimator
    for a, b in zip(loaded.conv_bias_precisions_, tau, strict=True):
        np.testing.assert_array_equal(a, b)
    y = np.arange(X.shape[0]) % 10
    copies = [copy.deepcopy(est), loaded]
    fresh = copy.deepcopy(est)
    fresh.conv_bias_precisions_ = None  # continues from τ = 1 instead
    for c in [*copies, fresh]:
        c._rng = np.random.default_rng(5)
        c.partial_fit(X, y)
    assert all(np.array_equal(p, q) for p, q in zip(*(c.intercepts_ for c in copies), strict=True))
    assert not np.array_equal(fresh.intercepts_[0], copies[0].intercepts_[0])
    plain = EBPClassifier(architecture="6C3p1-MP2-32", max_iter=1, random_state=0).fit(X, y)
    assert plain.conv_bias_precisions_ is None
    save_model(tmp_path / "plain.npz", plain)
    assert "bias_precision_0" not in read_npz(tmp_path / "plain.npz", what="model")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda a: a.pop("bias_precision_1"), "conv bias precisions present for only some layers"),
        (lambda a: a.update(bias_precision_0=np.zeros(6)), "'bias_precision_0' holds a precision"),
        (lambda a: a.update(bias_precision_0=np.ones(5)), r"layer 0 needs \(6,\)"),
    ],
)
def test_bad_conv_bias_precisions_name_the_file(tmp_path, weighted, change, match):
    path = tmp_path / "m.npz"
    save_model(path, weighted[0])
    arrays = read_npz(path, what="model")
    header = decode_header(arrays.pop("header"), str(path))
    change(arrays)
    header["arrays"] = {k: {"shape": list(a.shape), "dtype": a.dtype.str} for k, a in
                        arrays.items()}  # fmt: skip
    np.savez(path, header=encode_header(header), **arrays)
    with pytest.raises(ModelFormatError, match=match) as info:
        load_model(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_precision_step_needs_conv_layers_and_fitting_precisions(weighted):
    est, X = weighted
    with pytest.raises(ValueError, match="conv_bias_step='precision' applies to conv layers"):
        EBPClassifier(hidden_layer_sizes=(8,), conv_bias_step="precision").fit(X, X[:, 0] > 0)
    broken = copy.deepcopy(est)
    broken.conv_bias_precisions_ = broken.conv_bias_precisions_[:2]
    broken._net = None
    with pytest.raises(ValueError, match="conv_bias_precisions_ has shapes"):
        broken.predict(X)
