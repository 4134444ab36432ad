"""The post-hoc EBP-D threshold refit (core.refit) against brute force and on a trained net."""

from __future__ import annotations

import numpy as np
import pytest

from ebprop.core import Network, forward, make_family, predict_deterministic
from ebprop.core.refit import best_thresholds, refit_deterministic_biases


def _agreement(a: np.ndarray, target: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return ((a >= theta[None, :]) == target).sum(axis=0)


@pytest.mark.parametrize("integer", [True, False])
def test_best_thresholds_match_brute_force(integer: bool) -> None:
    rng = np.random.default_rng(0)
    n, units = 60, 7
    a = (
        rng.integers(-5, 6, size=(n, units)).astype(float)
        if integer
        else rng.normal(size=(n, units))
    )
    target = (a + rng.normal(scale=2.0, size=a.shape)) > 0.5
    theta = best_thresholds(a, target, np.zeros(units))
    for k in range(units):
        candidates = np.concatenate([np.unique(a[:, k]), [a[:, k].max() + 1]])
        brute = max(((a[:, k] >= c) == target[:, k]).sum() for c in candidates)
        assert _agreement(a[:, k : k + 1], target[:, k : k + 1], theta[k : k + 1])[0] == brute


def test_best_thresholds_prefer_the_current_one_among_ties() -> None:
    a = np.array([[0.0], [1.0], [2.0], [3.0]])
    target = np.array([[False], [False], [True], [True]])
    # Any θ in (1, 2] separates perfectly; the midpoint 1.5 is the only candidate there.
    assert best_thresholds(a, target, np.array([100.0]))[0] == pytest.approx(1.5)
    # All-agreeing targets: "never fire" (θ above max) and θ below min tie with others; keep near 0.
    always = np.ones((4, 1), dtype=bool)
    assert best_thresholds(a, always, np.array([-0.2]))[0] <= 0.0


def test_refit_makes_uncertain_sign_units_agree_with_their_means() -> None:
    """Weak posteriors (small H): tanh H ≈ H makes the bias dominate EBP-P's mean, while sign(H)
    makes the weights dominate EBP-D. The refitted thresholds restore the agreement."""
    rng = np.random.default_rng(1)
    n_in, n_hidden = 40, 12
    H0 = rng.normal(scale=0.1, size=(n_in, n_hidden))
    H1 = rng.normal(scale=3.0, size=(n_hidden, 3))
    b0 = rng.normal(scale=1.0, size=n_hidden)
    net = Network(make_family("binary"), H=[H0, H1], b=[b0, np.zeros(3)])
    X = rng.normal(size=(2000, n_in)) + 0.3
    biases = refit_deterministic_biases(net, X)
    assert np.array_equal(biases[-1], net.b[-1])  # output layer untouched
    assert np.array_equal(net.b[0], b0)  # the network is not modified
    target = forward(net, X)[0].z >= 0
    a = X @ np.where(H0 >= 0, 1.0, -1.0)
    before = ((a + net.b[0] >= 0) == target).mean()
    after = ((a + biases[0] >= 0) == target).mean()
    assert before < 0.7 and after > 0.9  # measured 0.63 → 0.91
    refit = Network(make_family("binary"), H=[H0, H1], b=biases)
    assert predict_deterministic(refit, X).shape == (2000, 3)


def test_estimator_refit_is_used_by_ebp_d_saved_and_discarded_by_training(tmp_path) -> None:
    from sklearn.datasets import load_digits

    from ebprop import EBPClassifier
    from ebprop.persist import load_model, save_model

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    est = EBPClassifier(hidden_layer_sizes=(30, 30), max_iter=3, random_state=0).fit(X, y)
    assert est.deterministic_intercepts_ is None
    before_d = est.decision_function(X, readout="deterministic")
    before_p = est.predict_proba(X)
    est.refit_deterministic(X)
    assert len(est.deterministic_intercepts_) == 3
    assert not np.array_equal(est.deterministic_intercepts_[0], est.intercepts_[0])
    assert np.array_equal(est.deterministic_intercepts_[-1], est.intercepts_[-1])
    after_d = est.decision_function(X, readout="deterministic")
    assert not np.array_equal(before_d, after_d)
    np.testing.assert_array_equal(est.predict_proba(X), before_p)  # EBP-P untouched
    save_model(tmp_path / "m.npz", est, None, {})
    loaded = load_model(tmp_path / "m.npz").estimator
    np.testing.assert_array_equal(loaded.decision_function(X, readout="deterministic"), after_d)
    est.partial_fit(X, y)
    assert est.deterministic_intercepts_ is None  # stale after training


def test_run_with_refit_keeps_both_models(tmp_path) -> None:
    import json

    from ebprop.persist import load_model
    from ebprop.runs import TrainOptions, train_run

    opts = TrainOptions(hidden=(20, 20), epochs=3, refit_thresholds=True)
    summary = train_run(opts, tmp_path / "run", make_plots=False)
    models = summary["models"]
    assert set(models) == {"EBP-P", "EBP-D"}
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    for name, key in (("EBP-P", "val_error_p"), ("EBP-D", "val_error_d")):
        best = min(history, key=lambda r: (r[key], r["epoch"]))
        assert models[name]["epoch"] == best["epoch"]
        assert (tmp_path / "run" / models[name]["file"]).is_file()
    d = load_model(tmp_path / "run" / "model_d.npz").estimator
    assert d.deterministic_intercepts_ is not None
    with pytest.raises(ValueError, match="binary weights only"):
        TrainOptions(weights="real", refit_thresholds=True)


def test_packed_export_uses_the_refitted_thresholds() -> None:
    from sklearn.datasets import load_digits

    from ebprop import EBPClassifier
    from ebprop.datasets import Preprocessor
    from ebprop.packed import PackedNetwork

    images, y = load_digits(return_X_y=True)
    images = images.reshape(-1, 8, 8).astype(np.uint8)
    pre = Preprocessor().fit(images, 16)
    X = pre.transform(images, np.float32)
    est = EBPClassifier(hidden_layer_sizes=(30, 30), max_iter=3, random_state=0).fit(X, y)
    est.refit_deterministic(X)
    packed = PackedNetwork.from_estimator(est, pre)
    np.testing.assert_array_equal(packed.predict(images), est.predict(X, readout="deterministic"))
