"""The overshoot control of the summed minibatch update (issue 32; ebprop.core.overshoot)."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from scipy import special
from sklearn.datasets import load_digits

import ebprop.core.step as step_module
from ebprop import EBPClassifier
from ebprop.core import backward, forward, init_network, make_family, step_inplace, update_inplace
from ebprop.core.overshoot import curvature, overshoot_gain
from ebprop.trainer import DivergenceWarning, encode_targets

DATA = Path(__file__).parent / "data"


def _script(path: Path) -> ModuleType:
    """The script at ``path`` as a module (tests/data is no package; no sys.path edit)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _script(DATA / "make_update_reference.py")

REFERENCE = json.loads((DATA / "update_reference.json").read_text())


@pytest.fixture
def gains(monkeypatch):
    """Every γ the NumPy step computes, in order."""
    seen: list[float] = []

    def spy(*args):
        g = overshoot_gain(*args)
        seen.append(g)
        return g

    monkeypatch.setattr(step_module, "overshoot_gain", spy)
    return seen


def test_curvature_is_minus_the_second_derivative_of_log_cdf():
    t = np.array([-1e6, -50.0, -8.0, -1.0, 0.0, 0.5, 3.0, 12.0, 40.0])
    h = 1e-3 * np.maximum(1.0, np.abs(t))
    fd = -(special.log_ndtr(t + h) - 2 * special.log_ndtr(t) + special.log_ndtr(t - h)) / h**2
    np.testing.assert_allclose(curvature(t)[1:], fd[1:], rtol=2e-4, atol=1e-12)
    assert curvature(t)[0] == 1.0  # far beyond the cancellation: 1 − O(1/t²)
    assert ((curvature(t) >= 0) & (curvature(t) <= 1)).all()


@pytest.mark.parametrize("weights", ["binary", "real"])
@pytest.mark.parametrize("sizes", [(6, 3), (6, 5, 3)])
def test_gain_is_the_inverse_trace_against_a_direct_computation(weights, sizes):
    # T_k = Σ_s c K/σ²c with K = 1 + Σ_j P_j u_j² from its definition (P = 1 − M² or 1)
    rng = np.random.default_rng(3)
    net = init_network(sizes, make_family(weights), rng, init_variance=30.0, dtype=np.float64)
    x = rng.normal(size=(40, sizes[0]))
    y = encode_targets(rng.integers(0, 3, 40), 3, np.float64)
    stats = forward(net, x)
    u = x if len(sizes) == 2 else stats[-2].v
    P = 1.0 - net.M2[-1] if weights == "binary" else np.ones_like(net.M2[-1])
    T = np.zeros(sizes[-1])
    for s in range(40):
        for k in range(sizes[-1]):
            K = 1.0 + sum(P[j, k] * u[s, j] ** 2 for j in range(u.shape[1]))
            T[k] += curvature(y[s, k] * stats[-1].z[s, k]) * K / stats[-1].scale[s, k] ** 2
    assert T.max() > 1.0  # forty samples of a saturated network: the control must act
    assert overshoot_gain(net, x, y, stats) == pytest.approx(1.0 / T.max(), rel=1e-9)


@pytest.mark.parametrize("weights", ["binary", "real"])
def test_a_single_sample_never_needs_damping(weights):
    rng = np.random.default_rng(0)
    net = init_network((8, 6, 4), make_family(weights), rng, init_variance=100.0, dtype=np.float64)
    for _ in range(200):
        x = rng.normal(size=(1, 8)) * rng.uniform(0.1, 10)
        y = encode_targets(rng.integers(0, 4, 1), 4, np.float64)
        assert overshoot_gain(net, x, y, forward(net, x)) == 1.0


def test_identical_samples_take_one_samples_step():
    # B copies of one sample: the old update took B times the sample's own step; the damped one
    # takes the sample's step divided by its λ_s = cK/σ²c ≤ 1 (the Newton step of the copies'
    # quadratic model), whatever B is.
    rng = np.random.default_rng(1)
    x1 = rng.uniform(0, 1, size=(1, 10))
    y1 = np.full((1, 1), -1.0)
    steps = {}
    for batch in (1, 32):
        net = init_network((10, 1), make_family("binary"), np.random.default_rng(2),
                           dtype=np.float64)  # fmt: skip
        net.H[0][:] = 0.8
        net.refresh_moments_inplace(0)
        H0 = net.H[0].copy()
        x, y = np.repeat(x1, batch, axis=0), np.repeat(y1, batch, axis=0)
        stats = forward(net, x)
        g = overshoot_gain(net, x, y, stats)
        update_inplace(net, x, stats, backward(net, stats, y, g))
        steps[batch] = (net.H[0] - H0, g, stats[-1])
    single, g1, st = steps[1]
    assert g1 == 1.0
    K = 1.0 + (x1[0] ** 2 * (1 - np.tanh(0.8) ** 2)).sum()
    lam = curvature(-st.z[0, 0]) * K / st.scale[0, 0] ** 2
    assert 0.1 < lam < 1.0
    np.testing.assert_allclose(steps[32][0] * lam, single, rtol=1e-10)
    assert steps[32][1] == pytest.approx(1.0 / (32 * lam), rel=1e-12)


@pytest.mark.parametrize("name", sorted(reference.CASES))
def test_bit_identical_where_nothing_overshoots(name, gains):
    """Arrays trained by the update before the control (tests/data/make_update_reference.py)."""
    kwargs = reference.CASES[name]
    if kwargs.get("n_jobs") == 1:
        pytest.importorskip("numba")
    est = reference.train(kwargs)
    assert reference.digest(est) == REFERENCE[name]
    if kwargs.get("n_jobs") == 0:
        assert gains and set(gains) == {1.0}  # the case is one where nothing could overshoot


def _digits():
    X, y = load_digits(return_X_y=True)
    return X[:1400] / 16.0, y[:1400], X[1400:] / 16.0, y[1400:]


@pytest.mark.parametrize("n_jobs", [0, 1])
@pytest.mark.parametrize(("hidden", "batch"), [((), 32), ((16,), 32), ((16,), 100), ((4,), 10)])
def test_finite_and_learning_where_the_old_update_diverged(hidden, batch, n_jobs, gains):
    """Settings that diverged before the control (issue 32: 3 of 3 seeds through the estimator)."""
    if n_jobs:
        pytest.importorskip("numba")
    Xtr, ytr, Xte, yte = _digits()
    est = EBPClassifier(hidden, batch_size=batch, max_iter=3, random_state=3, n_jobs=n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergenceWarning)
        est.fit(Xtr, ytr)
    assert all(np.isfinite(a).all() for a in (*est.coefs_, *est.intercepts_))
    assert max(np.abs(a).max() for a in (*est.coefs_, *est.intercepts_)) < 1e3
    assert est.score(Xte, yte) > 0.3  # chance is 0.1; the diverged runs ended there
    if n_jobs == 0:
        assert min(gains) < 1.0  # the control acted


def test_old_update_diverges_on_those_settings(monkeypatch):
    # Without the control (γ always 1) the first setting above does diverge: the test above
    # measures the control, not an easy setting.
    monkeypatch.setattr(step_module, "overshoot_gain", lambda *args: 1.0)
    Xtr, ytr, _, _ = _digits()
    est = EBPClassifier((16,), batch_size=32, max_iter=3, random_state=3, n_jobs=0)
    with pytest.warns(DivergenceWarning):
        est.fit(Xtr, ytr)


@pytest.mark.parametrize("weights", ["binary", "real"])
@pytest.mark.parametrize("sizes", [(12, 3), (12, 9, 3)])
@pytest.mark.parametrize("intercept", [True, False])
def test_fused_gain_equals_core_gain(weights, sizes, intercept):
    pytest.importorskip("numba")
    from ebprop.kernels._overshoot import gain

    rng = np.random.default_rng(5)
    net = init_network(sizes, make_family(weights), rng, init_variance=30.0, dtype=np.float64,
                       fit_intercept=intercept)  # fmt: skip
    x = rng.uniform(0, 1, size=(16, sizes[0]))
    y = encode_targets(rng.integers(0, 3, 16), 3, np.float64)
    stats = forward(net, x)
    u = x if len(sizes) == 2 else stats[-2].v
    pad = np.vstack([u, np.full((4, u.shape[1]), 9.0)])  # padding rows are ignored
    zpad = np.vstack([stats[-1].z, np.zeros((4, 3))])
    spad = np.vstack([stats[-1].scale, np.ones((4, 3))])
    ypad = np.vstack([y, np.ones((4, 3))])
    g = gain(ypad, zpad, spad, pad, net.M[-1], 16, weights == "binary", len(sizes) > 2, intercept)
    expected = overshoot_gain(net, x, y, stats)
    assert expected < 1.0
    assert g == pytest.approx(expected, rel=1e-9)


def test_step_applies_the_gain_to_every_layer():
    rng = np.random.default_rng(4)
    sizes = (10, 8, 3)
    x = rng.uniform(0, 1, size=(50, 10))
    y = encode_targets(rng.integers(0, 3, 50), 3, np.float64)
    nets = [
        init_network(
            sizes, make_family("binary"), np.random.default_rng(9), init_variance=30.0,
            dtype=np.float64,
        )
        for _ in range(2)
    ]  # fmt: skip
    stats = forward(nets[0], x)
    g = overshoot_gain(nets[0], x, y, stats)
    assert g < 1.0
    plain = backward(nets[0], stats, y)
    step_inplace(nets[1], x, y)
    # the same step by hand: every Δ_l scaled by γ
    update_inplace(nets[0], x, stats, [d * g for d in plain])
    for a, b in zip(nets[0].H + nets[0].b, nets[1].H + nets[1].b, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
