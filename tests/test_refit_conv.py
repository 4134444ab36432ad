"""The EBP-D threshold refit of conv networks (core.refit_conv) against a loop transcription."""

from __future__ import annotations

import numpy as np
import pytest

from ebprop import EBPClassifier
from ebprop.core import make_family
from ebprop.core.architecture import ConvSpec, DenseSpec, PoolSpec, parse_architecture
from ebprop.core.convnet import conv_forward, init_conv_network
from ebprop.core.predict import predict_deterministic
from ebprop.core.refit_conv import refit_conv_biases
from ebprop.datasets import Preprocessor, load_dataset
from ebprop.packed import PackedNetwork, pack_estimator
from ebprop.persist import load_model, save_model

ARCH = "4C3s2p1-MP2-3C2-6"  # stride, padding, a pool that drops a row, conv, dense
SHAPE = (9, 9, 2)


def _net(seed: int = 0):
    rng = np.random.default_rng(seed)
    specs = parse_architecture(ARCH) + (DenseSpec(3),)
    net = init_conv_network(specs, SHAPE, make_family("binary"), rng, 30.0, np.float64)
    for b in net.b:
        b[...] = rng.normal(scale=2.0, size=b.shape)  # thresholds worth moving
    X = rng.normal(size=(40, int(np.prod(SHAPE)))) + 0.2
    return net, X


def _best_theta(a: np.ndarray, target: np.ndarray, theta0: float) -> float:
    """The θ of most agreements of ``a ≥ θ`` with ``target``, ties to the one nearest θ0:
    candidates midway between neighbouring distinct values, and 1 beyond either end."""
    u = np.unique(a)
    candidates = [u[0] - 1.0] + [(u[j] + u[j + 1]) / 2 for j in range(len(u) - 1)] + [u[-1] + 1]
    best, best_score, best_dist = None, -1, np.inf
    for theta in candidates:
        score = int(np.sum((a >= theta) == target))
        dist = abs(theta - theta0)
        if score > best_score or (score == best_score and dist < best_dist):
            best, best_score, best_dist = theta, score, dist
    return best


def _reference(net, X: np.ndarray) -> list[np.ndarray]:
    """Loop by loop: sign weights, taps outside the image add 0, pools are a max of ±1 bits."""
    z = [layer.stats.z for layer in conv_forward(net, X) if layer.stats is not None]
    n = len(X)
    h = X.reshape((n, *SHAPE))
    biases, index = [], 0
    for spec, shape in zip(net.specs, net.shapes, strict=True):
        if index == len(net.H) - 1:
            break
        if isinstance(spec, PoolSpec):
            k = spec.size
            out = np.empty((n, *shape))
            for y in range(shape[0]):
                for x in range(shape[1]):
                    out[:, y, x, :] = h[:, y * k : y * k + k, x * k : x * k + k, :].max(axis=(1, 2))
            h = out
            continue
        W = np.where(net.H[index] >= 0, 1.0, -1.0)
        if isinstance(spec, ConvSpec):
            k, s, p, c_in = spec.kernel, spec.stride, spec.pad, h.shape[3]
            a = np.zeros((n, *shape))
            for y in range(shape[0]):
                for x in range(shape[1]):
                    for ky in range(k):
                        for kx in range(k):
                            iy, ix = y * s + ky - p, x * s + kx - p
                            if 0 <= iy < h.shape[1] and 0 <= ix < h.shape[2]:
                                for c in range(c_in):
                                    row = (ky * k + kx) * c_in + c
                                    a[:, y, x, :] += h[:, iy, ix, c, None] * W[row]
            a = a.reshape(-1, shape[2])  # rows (image, y, x): positions pooled
        else:
            a = h.reshape(n, -1) @ W
        target = z[index] >= 0
        theta = np.array(
            [_best_theta(a[:, k], target[:, k], -net.b[index][k]) for k in range(a.shape[1])]
        )
        biases.append(-theta)
        h = np.where(a - theta >= 0, 1.0, -1.0)
        if isinstance(spec, ConvSpec):
            h = h.reshape((n, *shape))
        index += 1
    return biases + [net.b[-1]]


def test_refit_equals_the_loop_transcription():
    net, X = _net()
    before = [b.copy() for b in net.b]
    got = refit_conv_biases(net, X)
    expected = _reference(net, X)
    assert len(got) == len(net.b) == 4
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-9)
    assert any(not np.allclose(g, b) for g, b in zip(got[:-1], before[:-1], strict=True))
    for b, kept in zip(net.b, before, strict=True):
        np.testing.assert_array_equal(b, kept)  # the network is not modified


def test_refit_agrees_more_with_ebp_p_and_limits_its_rows():
    net, X = _net(1)
    got = refit_conv_biases(net, X)
    # first conv layer: same inputs before and after, so agreement can only rise
    z = conv_forward(net, X)[0].stats.z
    from ebprop.core.conv import im2col

    a = im2col(X.reshape((-1, *SHAPE)), 3, 2, 1) @ np.where(net.H[0] >= 0, 1.0, -1.0)
    agree = [np.mean((a + b >= 0) == (z >= 0)) for b in (net.b[0], got[0])]
    assert agree[1] > agree[0]
    # max_rows: the first ⌊max_rows / P⌋ images (P = 25 positions of the first layer)
    limited = refit_conv_biases(net, X, max_rows=25 * 10 + 7)
    for g, e in zip(limited, refit_conv_biases(net, X[:10]), strict=True):
        np.testing.assert_array_equal(g, e)
    one = refit_conv_biases(net, X, max_rows=1)
    for g, e in zip(one, refit_conv_biases(net, X[:1]), strict=True):
        np.testing.assert_array_equal(g, e)


@pytest.fixture(scope="module")
def digits_cnn():
    ds = load_dataset("digits")
    pre = Preprocessor().fit(ds.X_train, ds.max_value)
    est = EBPClassifier(architecture="6C3-MP2-16", max_iter=2, random_state=0)
    est.fit(pre.transform(ds.X_train), ds.y_train)
    return ds, pre, est


def test_estimator_refits_conv_thresholds_and_they_are_saved_and_exported(digits_cnn, tmp_path):
    ds, pre, est = digits_cnn
    X = pre.transform(ds.X_train)
    est.refit_deterministic(X)
    expected = refit_conv_biases(est.network(), X)
    for g, e in zip(est.deterministic_intercepts_, expected, strict=True):
        np.testing.assert_array_equal(g, e)
    X_test = pre.transform(ds.X_test)
    out = predict_deterministic(est.network(), X_test, biases=expected)
    pred = est.predict(X_test, readout="deterministic")
    np.testing.assert_array_equal(pred, est.classes_[out.argmax(axis=1)])
    save_model(tmp_path / "m.npz", est, pre)
    loaded = load_model(tmp_path / "m.npz").estimator
    np.testing.assert_array_equal(loaded.predict(X_test, readout="deterministic"), pred)
    packed = PackedNetwork(pack_estimator(est, pre))
    np.testing.assert_array_equal(packed.predict(ds.X_test), pred)
