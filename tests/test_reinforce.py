"""Reinforcement (issue 10): H ← ρH + ΔH, its schedule, and what it does to EBP-D."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from ebprop import EBPClassifier
from ebprop.core import (
    AUTO_REINFORCEMENT,
    PARAMETER_BOUND,
    Reinforcement,
    backward,
    diverged,
    forward,
    init_network,
    make_family,
    parse_reinforcement,
    step_inplace,
    update_inplace,
)
from ebprop.exceptions import DivergenceWarning


def _net(seed: int = 0, weights: str = "binary"):
    rng = np.random.default_rng(seed)
    return init_network((12, 9, 7, 3), make_family(weights), rng, init_variance=3.0)


def _batch(seed: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(5, 12)).astype(np.float32)
    y = -np.ones((5, 3), np.float32)
    y[np.arange(5), rng.integers(0, 3, 5)] = 1.0
    return x, y


def test_rho_of_one_is_bit_identical_to_plain_ebp() -> None:
    a, b = _net(), _net()
    for t in range(20):
        x, y = _batch(t)
        step_inplace(a, x, y)
        step_inplace(b, x, y, rho=(1.0, 1.0, 1.0))
    for ha, hb, ma, mb in zip(a.H, b.H, a.M, b.M, strict=True):
        assert np.array_equal(ha, hb) and np.array_equal(ma, mb)


def test_update_scales_h_then_adds_the_increment_and_refreshes_the_moments() -> None:
    net = _net()
    x, y = _batch()
    stats = forward(net, x)
    deltas = backward(net, stats, y)
    H0 = [h.copy() for h in net.H]
    rho = (1.5, 0.5, 1.0)
    update_inplace(net, x, stats, deltas, rho)
    plain = _net()
    update_inplace(plain, x, forward(plain, x), backward(plain, forward(plain, x), y))
    for layer, (r, h0) in enumerate(zip(rho, H0, strict=True)):
        increment = plain.H[layer] - h0  # ½ ⟨v⟩ᵀΔ, the same for both nets
        np.testing.assert_allclose(net.H[layer], r * h0 + increment, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(net.M[layer], np.tanh(net.H[layer]))  # moments refreshed
        np.testing.assert_array_equal(net.M2[layer], net.M[layer] * net.M[layer])
    # Zero increments: H scales exactly.
    net2 = _net()
    zero = [np.zeros_like(d) for d in deltas]
    update_inplace(net2, x, forward(net2, x), zero, (2.0, 1.0, 1.0))
    assert np.array_equal(net2.H[0], np.float32(2.0) * _net().H[0])
    assert np.array_equal(net2.H[1], _net().H[1])


def test_rho_needs_one_factor_per_layer() -> None:
    net = _net()
    x, y = _batch()
    with pytest.raises(ValueError, match="3 layers"):
        step_inplace(net, x, y, rho=(1.1, 1.1))


def test_schedule_factors() -> None:
    s = Reinforcement(hidden=1.001, output=0.999, start=2.0, ramp=2.0)
    assert s.factors(3, 1.99) is None  # plain EBP before start
    assert s.factors(3, 3.0) == pytest.approx((1.0005, 1.0005, 0.9995))  # half-way up the ramp
    assert s.factors(3, 10.0) == pytest.approx((1.001, 1.001, 0.999))
    assert Reinforcement(hidden=1.01).factors(2, 0.0) == (1.01, 1.0)


def test_schedule_stop_returns_to_plain_ebp_but_keeps_the_peak_for_the_divergence_check() -> None:
    s = Reinforcement(hidden=1.001, output=0.999, start=2.0, ramp=2.0, stop=5.0)
    assert s.factors(3, 4.99) == pytest.approx((1.001, 1.001, 0.999))
    assert s.factors(3, 5.0) is None  # plain EBP from stop on
    assert s.factors(3, 50.0) is None
    assert s.peak_factors(3, 1.0) is None  # not begun
    assert s.peak_factors(3, 2.5) == (1.001, 1.001, 0.999)
    assert s.peak_factors(3, 50.0) == (1.001, 1.001, 0.999)  # fields grown to the bound stay
    assert Reinforcement(hidden=1.01).factors(2, 1e9) == (1.01, 1.0)  # no stop by default


def test_a_stopped_schedule_is_the_reinforced_run_continued_by_plain_ebp() -> None:
    # 2 epochs reinforced then plain == the first 2 epochs of a never-stopping schedule, resumed
    # with reinforcement off: the two paths must end bit-identical.
    X, y = load_digits(return_X_y=True)
    X = X[:300] / 16.0
    y = y[:300]
    kw = dict(hidden_layer_sizes=(20, 20), random_state=0, shuffle=False)
    a = EBPClassifier(max_iter=4, reinforcement="hidden=1.01,start=1,stop=3", **kw).fit(X, y)
    b = EBPClassifier(max_iter=3, reinforcement="hidden=1.01,start=1", **kw).fit(X, y)
    b.set_params(reinforcement=None, max_iter=1, warm_start=True).fit(X, y)
    c = EBPClassifier(max_iter=4, reinforcement="hidden=1.01,start=1", **kw).fit(X, y)
    for ca, cb in zip(a.coefs_, b.coefs_, strict=True):
        np.testing.assert_array_equal(ca, cb)
    assert not all(np.array_equal(ca, cc) for ca, cc in zip(a.coefs_, c.coefs_, strict=True))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (1.0, None),
        ("none", None),
        ("1", None),
        (1.0001, Reinforcement(hidden=1.0001)),
        ("1.0001", Reinforcement(hidden=1.0001)),
        ("auto", AUTO_REINFORCEMENT),
        ("hidden=1.0001,start=10", Reinforcement(hidden=1.0001, start=10.0)),
        ("hidden=1.01, output=0.99, ramp=2", Reinforcement(hidden=1.01, output=0.99, ramp=2.0)),
        ("hidden=1.0001,start=30,stop=36", Reinforcement(hidden=1.0001, start=30.0, stop=36.0)),
    ],
)
def test_parse_reinforcement(value, expected) -> None:
    assert parse_reinforcement(value) == expected
    if expected is not None:
        assert parse_reinforcement(expected.to_spec()) == expected


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("fast", "expected a number, 'auto' or key=value"),
        ("hidden=abc", "hidden='abc' is not a number"),
        ("gamma=2", "keys hidden, output, start, ramp, stop"),
        ("hidden=1.1,start=5,stop=5", "stop must be an epoch after start"),
        ("hidden=1.1,stop=nan", "stop must be an epoch after start"),
        (5.0, r"in \[0.5, 2\]"),
        ("nan", r"in \[0.5, 2\]"),
        ("hidden=1.1,start=-1", "start must be ≥ 0"),
        ([1.1], "must be a number"),
    ],
)
def test_parse_reinforcement_errors(value, match) -> None:
    with pytest.raises(ValueError, match=match):
        parse_reinforcement(value)


def test_estimator_refuses_reinforcement_of_real_weights() -> None:
    X = np.random.default_rng(0).normal(size=(20, 4))
    with pytest.raises(ValueError, match="binary weights only"):
        EBPClassifier(weights="real", reinforcement=1.001).fit(X, np.arange(20) % 2)


def test_reinforcement_makes_two_hidden_layer_ebp_d_better_on_digits() -> None:
    """EBP-D of a 64-100-100-10 binary net, 15 epochs, seeds 0–2 (measured: plain 7.0/3.3/9.6 %,
    ρ = 1.002: 3.0/3.5/3.3 %)."""
    X, y = load_digits(return_X_y=True)
    split = train_test_split(X / 16.0, y, test_size=0.3, random_state=0, stratify=y)
    X_tr, X_te, y_tr, y_te = split
    errors = {}
    for rho in (None, 1.002):
        errors[rho] = [
            np.mean(
                EBPClassifier(hidden_layer_sizes=(100, 100), max_iter=15, random_state=seed,
                              reinforcement=rho)
                .fit(X_tr, y_tr)
                .predict(X_te, readout="deterministic")
                != y_te
            )
            for seed in range(3)
        ]  # fmt: skip
    plain, reinforced = np.array(errors[None]), np.array(errors[1.002])
    assert reinforced.mean() < plain.mean() - 0.015
    assert reinforced.max() < 0.045


def test_a_reinforced_binary_layer_at_the_bound_is_saturated_not_diverged() -> None:
    net = _net()
    net.H[0][0, 0] = PARAMETER_BOUND
    assert diverged(net)  # plain EBP: a field at the bound means the update diverged
    assert diverged(net, (1.0, 1.0001, 1.0))  # layer 0 is not reinforced
    assert not diverged(net, (1.0001, 1.0001, 1.0))  # reinforced: a weight fixed at +1
    net.b[0][0] = -PARAMETER_BOUND  # biases are never reinforced: still a divergence
    assert diverged(net, (1.0001, 1.0001, 1.0))
    real = _net(weights="real")
    real.H[0][0, 0] = PARAMETER_BOUND
    assert diverged(real, (1.0001, 1.0001, 1.0))  # real weights have no saturation


def test_reinforcement_that_saturates_the_fields_does_not_warn() -> None:
    # ρ = 1.05 per minibatch multiplies a field by ~10²⁰ per epoch of the digits: the hidden
    # fields reach the bound in the first epoch. That is the schedule working, not a divergence.
    X, y = load_digits(return_X_y=True)
    clf = EBPClassifier(hidden_layer_sizes=(30, 30), max_iter=2, random_state=0,
                        reinforcement=1.05)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergenceWarning)
        clf.fit(X / 16.0, y)
    assert max(np.abs(c).max() for c in clf.coefs_[:2]) == PARAMETER_BOUND
    assert np.mean(clf.predict(X / 16.0, readout="deterministic") == y) > 0.5


def test_fields_saturated_before_a_stop_do_not_warn_after_it() -> None:
    # ρ = 1.05 saturates the hidden fields within two epochs; from epoch 2 on the run is plain
    # EBP again, and the fields at the bound are still weights fixed at ±1, not a divergence.
    X, y = load_digits(return_X_y=True)
    clf = EBPClassifier(hidden_layer_sizes=(30, 30), max_iter=4, random_state=0,
                        reinforcement="hidden=1.05,stop=2")  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergenceWarning)
        clf.fit(X / 16.0, y)
    assert max(np.abs(c).max() for c in clf.coefs_[:2]) == PARAMETER_BOUND
