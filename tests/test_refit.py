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
