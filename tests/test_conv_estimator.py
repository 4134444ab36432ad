"""EBPClassifier with a conv ``architecture``: learning, parameters, errors, predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from ebprop import EBPClassifier
from ebprop.core import ConvNetwork, Network


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.3, random_state=0, stratify=y)


def test_a_small_cnn_learns_the_digits_far_above_chance(digits):
    X_tr, X_te, y_tr, y_te = digits
    est = EBPClassifier(architecture="8C3p1-MP2-32", max_iter=8, random_state=0).fit(X_tr, y_tr)
    assert isinstance(est.network(), ConvNetwork)
    assert [c.shape for c in est.coefs_] == [(9, 8), (128, 32), (32, 10)]
    # chance is 10 %
    assert est.score(X_te, y_te) > 0.85
    assert np.mean(est.predict(X_te, "deterministic") == y_te) > 0.7
    proba = est.predict_proba(X_te[:5])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.array_equal(proba.argmax(axis=1), est.predict(X_te[:5]))


def test_training_is_reproducible_and_warm_start_continues(digits):
    X_tr, _, y_tr, _ = digits
    kw = dict(architecture="4C3s2-16", max_iter=2, random_state=3)
    a = EBPClassifier(**kw).fit(X_tr, y_tr)
    b = EBPClassifier(**kw).fit(X_tr, y_tr)
    assert all(np.array_equal(p, q) for p, q in zip(a.coefs_, b.coefs_, strict=True))
    c = EBPClassifier(**{**kw, "max_iter": 1}).fit(X_tr, y_tr)
    c.partial_fit(X_tr, y_tr)
    assert c.n_iter_ == 2
    assert all(np.array_equal(p, q) for p, q in zip(a.coefs_, c.coefs_, strict=True))


def test_an_all_dense_architecture_is_the_mlp(digits):
    X_tr, X_te, y_tr, _ = digits
    a = EBPClassifier(architecture="20-10", max_iter=1, random_state=0).fit(X_tr, y_tr)
    b = EBPClassifier(hidden_layer_sizes=(20, 10), max_iter=1, random_state=0).fit(X_tr, y_tr)
    assert isinstance(a.network(), Network)
    assert all(np.array_equal(p, q) for p, q in zip(a.coefs_, b.coefs_, strict=True))


def test_input_shape_for_non_square_and_multichannel_inputs():
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, size=(60, 4 * 6 * 2))
    y = np.arange(60) % 3
    est = EBPClassifier(architecture="3C3-5", input_shape=(4, 6, 2), max_iter=1, random_state=0)
    est.fit(X, y)
    assert est.coefs_[0].shape == (18, 3) and est.coefs_[1].shape == (2 * 4 * 3, 5)
    assert est.predict(X).shape == (60,)


@pytest.mark.parametrize(
    ("params", "n_features", "match"),
    [
        ({"architecture": "8C3-MQ2"}, 64, "architecture: architecture token 'MQ2'"),
        ({"architecture": "8C3", "hidden_layer_sizes": (50,)}, 64, "not both"),
        ({"architecture": "8C3"}, 60, "not a square grey image"),
        ({"architecture": "8C3", "input_shape": (8, 8, 2)}, 64, "has 128 values"),
        ({"architecture": "8C3", "input_shape": (8, 8)}, 64, "input_shape must be"),
        ({"architecture": "8C9"}, 64, "'8C9'"),
        ({"architecture": "MP2-8"}, 64, "'MP2' comes first"),
    ],
)
def test_parameter_errors_are_one_line(params, n_features, match):
    X = np.zeros((4, n_features))
    with pytest.raises(ValueError, match=match) as info:
        EBPClassifier(**params).fit(X, [0, 1, 0, 1])
    assert "\n" not in str(info.value)


def test_early_stopping_restores_a_conv_network(digits):
    X_tr, _, y_tr, _ = digits
    est = EBPClassifier(
        architecture="4C3s2-16", max_iter=3, early_stopping=True, n_iter_no_change=1,
        random_state=0,
    ).fit(X_tr, y_tr)  # fmt: skip
    net = est.network()
    for h, m in zip(net.H, net.M, strict=True):
        np.testing.assert_array_equal(m, np.tanh(h))


def test_early_stopping_restores_the_conv_bias_precisions_of_the_best_epoch(digits):
    X_tr, _, y_tr, _ = digits
    params = dict(architecture="4C3s2-16", conv_bias_step="precision", early_stopping=True,
                  n_iter_no_change=1, random_state=0)  # fmt: skip
    est = EBPClassifier(max_iter=6, **params).fit(X_tr, y_tr)
    best = 1 + int(np.argmax(est.validation_scores_))  # the earliest best epoch
    assert best < len(est.validation_scores_)  # it stopped after a worse epoch: a restore
    # the same split and sample order, stopped at the best epoch: the state it restored
    replay = EBPClassifier(max_iter=best, **params).fit(X_tr, y_tr)
    for a, b in zip(est.conv_bias_precisions_, replay.conv_bias_precisions_, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.all(est.conv_bias_precisions_[0] > 1.0)
    assert est.network().bias_precision is est.conv_bias_precisions_
