"""Conv and max-pool EBP layers against independent computations.

Monte Carlo (sampled weights and ±1 inputs) for the forward moments and the pooling moments; a
conv whose kernel covers the image against the dense core, bit for bit; finite differences of the
σ-frozen log-likelihood for the update; explicit loops for im2col, the conv mean and EBP-D.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from ebprop.core import BinaryWeights, Network, RealWeights, backward, forward, step_inplace
from ebprop.core.architecture import ConvSpec, DenseSpec, PoolSpec, parse_architecture
from ebprop.core.conv import col2im, im2col
from ebprop.core.convnet import (
    ConvNetwork,
    conv_backward,
    conv_diverged,
    conv_forward,
    conv_overshoot_gain,
    conv_step_inplace,
    init_conv_network,
)
from ebprop.core.pool import maxpool_backward, maxpool_deterministic, maxpool_forward
from ebprop.core.predict import output_z, predict_deterministic, predict_probabilistic

FAMILIES = [BinaryWeights(), RealWeights(prior_variance=0.7)]


def _net(family, text, input_shape, n_out=3, seed=0, scale=1.0, dtype=np.float64):
    specs = parse_architecture(text) + (DenseSpec(n_out),)
    net = init_conv_network(specs, input_shape, family, np.random.default_rng(seed), dtype=dtype)
    rng = np.random.default_rng(seed + 100)
    for h, b in zip(net.H, net.b, strict=True):
        h[...] = rng.normal(0, scale, size=h.shape)
        b[...] = rng.normal(0, 0.5, size=b.shape)
    for i in range(len(net.H)):
        net.refresh_moments_inplace(i)
    return net


def _loop_conv(a, W, b, spec):
    """Σ over valid taps of a (n, H, W, C) with W (k·k·C, C_out) rows (ky, kx, c) + b."""
    n, height, width, channels = a.shape
    k, s, p = spec.kernel, spec.stride, spec.pad
    oh, ow = (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1
    out = np.zeros((n, oh, ow, W.shape[1]))
    for oy in range(oh):
        for ox in range(ow):
            for ky in range(k):
                for kx in range(k):
                    iy, ix = oy * s + ky - p, ox * s + kx - p
                    if 0 <= iy < height and 0 <= ix < width:
                        for c in range(channels):
                            out[:, oy, ox, :] += np.outer(
                                a[:, iy, ix, c], W[(ky * k + kx) * channels + c]
                            )
    return out + b


def _loop_pool(a, size, op):
    n, height, width, channels = a.shape
    out = np.zeros((n, height // size, width // size, channels))
    for oy in range(height // size):
        for ox in range(width // size):
            window = a[:, oy * size : (oy + 1) * size, ox * size : (ox + 1) * size, :]
            out[:, oy, ox, :] = op(window.reshape(n, -1, channels))
    return out


@pytest.mark.parametrize("channels", [1, 3])  # one channel: the transposed layout
def test_im2col_matches_loops_and_col2im_is_its_adjoint(channels):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 6, 5, channels))
    for spec in [ConvSpec(1, 3), ConvSpec(1, 3, stride=2, pad=1), ConvSpec(1, 2, pad=2)]:
        cols = im2col(a, spec.kernel, spec.stride, spec.pad)
        W = rng.normal(size=(cols.shape[1], 4))
        expected = _loop_conv(a, W, 0.0, spec)
        np.testing.assert_allclose((cols @ W).reshape(expected.shape), expected, atol=1e-12)
        c = rng.normal(size=cols.shape)
        back = col2im(c, a.shape, spec.kernel, spec.stride, spec.pad)
        assert np.isclose((cols * c).sum(), (a * back).sum())


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
@pytest.mark.parametrize("spec", [ConvSpec(3, 3, pad=1), ConvSpec(3, 2, stride=2)], ids=str)
def test_first_conv_layer_moments_match_monte_carlo(family, spec):
    rng = np.random.default_rng(1)
    net = _net(family, spec.token(), (4, 4, 2))
    x = rng.normal(0, 1.0, size=(1, 4, 4, 2))
    st = conv_forward(net, x)[0].stats
    n = 40_000
    M = net.M[0]
    if family.name == "binary":
        W = np.where(rng.random((n, *M.shape)) < (1 + M) / 2, 1.0, -1.0)
    else:
        W = M + np.sqrt(family.prior_variance) * rng.standard_normal((n, *M.shape))
    rows = im2col(x, spec.kernel, spec.stride, spec.pad)  # (P, K): padded taps are 0
    pre = np.einsum("pk,nkc->npc", rows, W) + net.b[0]
    c = M.shape[0] + 1
    _check(pre.reshape(n, -1), (st.mu * np.sqrt(c)).ravel(), (st.scale**2 - 1).ravel())


def _check(samples, mu, var):
    n = samples.shape[0]
    assert np.all(np.abs(samples.mean(0) - mu) < 5 * np.sqrt(var / n))
    m4 = ((samples - samples.mean(0)) ** 4).mean(0)
    assert np.all(np.abs(samples.var(0) - var) < 5 * np.sqrt((m4 - var**2) / n) + 1e-12)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_hidden_conv_moments_with_padding_match_monte_carlo(family):
    # The second conv sees ±1 units; with pad 1 its border positions have fewer valid taps.
    rng = np.random.default_rng(2)
    net = _net(family, "2C3p1-3C3s2p1", (5, 5, 1), scale=0.7)
    x = rng.normal(size=(1, 5, 5, 1))
    first, second = conv_forward(net, x)[:2]
    p_plus = (1 + first.v[0]) / 2
    n = 40_000
    v = np.where(rng.random((n, *p_plus.shape)) < p_plus, 1.0, -1.0)
    M = net.M[1]
    if family.name == "binary":
        W = np.where(rng.random((n, *M.shape)) < (1 + M) / 2, 1.0, -1.0)
    else:
        W = M + np.sqrt(family.prior_variance) * rng.standard_normal((n, *M.shape))
    rows = im2col(v, 3, 2, 1).reshape(n, -1, M.shape[0])
    pre = np.einsum("npk,nkc->npc", rows, W) + net.b[1]
    st = second.stats
    c = M.shape[0] + 1
    _check(pre.reshape(n, -1), (st.mu * np.sqrt(c)).ravel(), (st.scale**2 - 1).ravel())


def test_maxpool_moments_match_sampling_and_the_backward_matches_finite_differences():
    rng = np.random.default_rng(3)
    means = rng.uniform(-0.95, 0.95, size=(1, 5, 4, 2))  # 5 rows: the last is dropped by floor
    v_out, q = maxpool_forward(means, 2)
    n = 100_000
    units = np.where(rng.random((n, 5, 4, 2)) < (1 + means[0]) / 2, 1.0, -1.0)
    sampled = _loop_pool(units, 2, lambda w: w.max(axis=1)).mean(0)
    assert np.all(np.abs(sampled - v_out[0]) < 5 * np.sqrt((1 - v_out[0] ** 2) / n) + 1e-9)
    grad_out = rng.normal(size=v_out.shape)
    analytic = maxpool_backward(grad_out, q, means.shape, 2)
    eps = 1e-6
    for idx in np.ndindex(means.shape):
        up, down = means.copy(), means.copy()
        up[idx] += eps
        down[idx] -= eps
        numeric = ((maxpool_forward(up, 2)[0] - maxpool_forward(down, 2)[0]) * grad_out).sum()
        assert np.isclose(analytic[idx], numeric / (2 * eps), atol=1e-8)
    assert np.all(analytic[:, 4] == 0)


def test_maxpool_backward_where_an_input_is_surely_plus_one():
    means = np.array([1.0, 0.2, -0.4, 1.0]).reshape(1, 2, 2, 1)  # two q_i = 0 exactly
    _, q = maxpool_forward(means, 2)
    grad = maxpool_backward(np.ones((1, 1, 1, 1)), q, means.shape, 2)
    assert np.all(grad == 0)
    means[0, 1, 1, 0] = 0.0  # now one q_i = 0: only that input's derivative survives
    _, q = maxpool_forward(means, 2)
    grad = maxpool_backward(np.ones((1, 1, 1, 1)), q, means.shape, 2)
    np.testing.assert_allclose(grad.ravel(), [0.4 * 0.7 * 0.5, 0, 0, 0])


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 4, 2), (1, 1, 5)])
def test_a_kernel_covering_the_image_is_the_dense_layer_bit_for_bit(family, dtype, shape):
    rng = np.random.default_rng(4)
    k = shape[0]
    conv = _net(family, f"6C{k}-5", shape, n_out=3, dtype=dtype)
    for h, b in zip(conv.H, conv.b, strict=True):
        h[...] = h.astype(dtype)
        b[...] = b.astype(dtype)
    dense = Network(family=family, H=[h.copy() for h in conv.H], b=[b.copy() for b in conv.b])
    x = rng.normal(size=(7, int(np.prod(shape)))).astype(dtype)
    y = np.where(rng.random((7, 3)) < 0.5, 1.0, -1.0).astype(dtype)
    cst, dst = conv_forward(conv, x, nu=0.3), forward(dense, x, nu=0.3)
    for c, d in zip(cst, dst, strict=True):
        assert np.array_equal(c.stats.z, d.z) and np.array_equal(c.stats.scale, d.scale)
        assert np.array_equal(c.v.reshape(d.v.shape), d.v)
    for c, d in zip(conv_backward(conv, cst, y), backward(dense, dst, y), strict=True):
        assert np.array_equal(c, d)
    out_c = conv_step_inplace(conv, x, y, rho=(1.0, 1.0, 1.0001))
    out_d = step_inplace(dense, x, y, rho=(1.0, 1.0, 1.0001))
    assert np.array_equal(out_c, out_d)
    for a, b in zip(conv.H + conv.b + conv.M, dense.H + dense.b + dense.M, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6 if dtype == np.float32 else 1e-13)


def _frozen_objective(net, Ms, biases, x, y, sigmas):
    """Σ log Φ(y μ_L/σ_L) with σ frozen, by explicit loops (no im2col, no pooling code)."""
    m = x.reshape((x.shape[0],) + net.input_shape)
    index = 0
    for spec in net.specs:
        if isinstance(spec, PoolSpec):
            m = _loop_pool(m, spec.size, lambda w: 1 - 2 * np.prod((1 - w) / 2, axis=1))
            continue
        M, c = Ms[index], Ms[index].shape[0] + 1
        if isinstance(spec, ConvSpec):
            mu = _loop_conv(m, M, biases[index], spec) / np.sqrt(c)
        else:
            mu = (m.reshape(m.shape[0], -1) @ M + biases[index]) / np.sqrt(c)
        z = mu.reshape(sigmas[index].shape[0], -1) / sigmas[index]
        if index == len(Ms) - 1:
            return special.log_ndtr(y * z).sum()
        m = special.erf(z / np.sqrt(2)).reshape(mu.shape)
        index += 1


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
@pytest.mark.parametrize("text", ["2C3p1-MP2-3C2-4", "2C3s2-3C2p1"])
def test_update_is_the_gradient_of_the_sigma_frozen_log_likelihood(family, text):
    rng = np.random.default_rng(5)
    net = _net(family, text, (6, 6, 2), scale=0.6)
    x = rng.normal(size=(3, 72))
    y = np.where(rng.random((3, 3)) < 0.5, 1.0, -1.0)
    layers = conv_forward(net, x)
    deltas = conv_backward(net, layers, y)
    params = [layer for layer in layers if layer.stats is not None]
    sigmas = [layer.stats.sigma for layer in params]
    eps = 1e-6
    H0 = [h.copy() for h in net.H]
    b0 = [b.copy() for b in net.b]
    conv_step_inplace(net, x, y)
    for index, layer in enumerate(params):
        analytic = 0.5 * layer.rows.T @ deltas[index]
        np.testing.assert_allclose(net.H[index] - H0[index], analytic, atol=1e-12)
        numeric = np.zeros_like(analytic)
        for idx in np.ndindex(analytic.shape):
            Ms = [family.means(h) for h in H0]
            Ms[index][idx] += eps
            up = _frozen_objective(net, Ms, b0, x, y, sigmas)
            Ms[index][idx] -= 2 * eps
            down = _frozen_objective(net, Ms, b0, x, y, sigmas)
            numeric[idx] = (up - down) / (2 * eps)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_tempering_divides_a_conv_update_by_a_power_of_its_positions():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 36))
    y = np.where(rng.random((2, 3)) < 0.5, 1.0, -1.0)
    plain = _net(BinaryWeights(), "2C3-4", (6, 6, 1))
    tempered = _net(BinaryWeights(), "2C3-4", (6, 6, 1))
    tempered.temper = 0.5
    H0 = [h.copy() for h in plain.H]
    conv_step_inplace(plain, x, y)
    conv_step_inplace(tempered, x, y)
    np.testing.assert_allclose(tempered.H[0] - H0[0], (plain.H[0] - H0[0]) / 4.0)  # √16
    np.testing.assert_allclose(tempered.H[1], plain.H[1])  # dense layers are never tempered


def test_a_conv_bias_with_a_precision_takes_the_precision_weighted_step():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3, 36))
    y = np.where(rng.random((3, 3)) < 0.5, 1.0, -1.0)
    plain = _net(BinaryWeights(), "2C3-4", (6, 6, 1))  # 16 output positions, 2 channels
    weighted = _net(BinaryWeights(), "2C3-4", (6, 6, 1))
    assert plain.bias_precision is None
    weighted.bias_precision = [np.ones(2), np.ones(3)]
    b0 = [b.copy() for b in plain.b]
    layers = conv_forward(plain, x)
    deltas = conv_backward(plain, layers, y, conv_overshoot_gain(plain, layers, y))
    conv_step_inplace(plain, x, y)
    conv_step_inplace(weighted, x, y)
    # independently: the terms of each channel over the batch and the 4×4 positions
    terms = 0.5 * deltas[0].reshape(3, 16, 2)
    tau = 1.0 + np.square(terms).sum(axis=(0, 1))
    np.testing.assert_allclose(plain.b[0] - b0[0], terms.sum(axis=(0, 1)), rtol=1e-12)
    np.testing.assert_allclose(weighted.bias_precision[0], tau, rtol=1e-12)
    np.testing.assert_allclose(weighted.b[0] - b0[0], terms.sum(axis=(0, 1)) / tau, rtol=1e-12)
    assert np.all(tau > 1.0)
    np.testing.assert_array_equal(weighted.H[0], plain.H[0])  # weights: the plain sum in both
    np.testing.assert_array_equal(weighted.b[1], plain.b[1])  # dense biases: the plain step
    np.testing.assert_array_equal(weighted.bias_precision[1], np.ones(3))


def test_ebp_d_matches_a_loop_transcription_of_the_spec():
    rng = np.random.default_rng(7)
    net = _net(BinaryWeights(), "3C3p1-MP2-4C2s2-5", (7, 7, 2), n_out=4)
    net.H[0][0, 0] = 0.0  # sign(0) = +1
    x = rng.uniform(0, 1, size=(6, 98))
    got = predict_deterministic(net, x)
    W = [np.where(h >= 0, 1.0, -1.0) for h in net.H]
    h = x.reshape(6, 7, 7, 2)
    h = np.where(_loop_conv(h, W[0], net.b[0], net.specs[0]) >= 0, 1.0, -1.0)
    h = _loop_pool(h, 2, lambda w: np.where((w > 0).any(axis=1), 1.0, -1.0))  # OR of bits
    h = np.where(_loop_conv(h, W[1], net.b[1], net.specs[2]) >= 0, 1.0, -1.0)
    h = np.where(h.reshape(6, -1) @ W[2] + net.b[2] >= 0, 1.0, -1.0)
    np.testing.assert_allclose(got, h @ W[3] + net.b[3], atol=1e-12)


def test_ebp_p_readouts_of_a_conv_network():
    rng = np.random.default_rng(8)
    net = _net(BinaryWeights(), "2C3-MP2-3", (6, 6, 1))
    x = rng.normal(size=(4, 36))
    z = output_z(net, x)
    np.testing.assert_allclose(predict_probabilistic(net, x), 2 * stats.norm.cdf(z) - 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_and_dtypes(dtype):
    specs = parse_architecture("4C3-MP2-8") + (DenseSpec(3),)
    net = init_conv_network(
        specs, (8, 8, 1), BinaryWeights(), np.random.default_rng(0), dtype=dtype
    )
    assert [h.shape for h in net.H] == [(9, 4), (36, 8), (8, 3)]
    assert all(h.dtype == dtype for h in net.H + net.b + net.M + net.M2)
    x = np.random.default_rng(1).normal(size=(5, 64)).astype(dtype)
    y = -np.ones((5, 3), dtype=dtype)
    out = conv_step_inplace(net, x, y, rho=(1.0, 1.0, 1.0))
    assert out.dtype == dtype and out.shape == (5, 3)
    assert not conv_diverged(net)
    net.H[1][0, 0] = 1e4
    assert conv_diverged(net) and not conv_diverged(net, rho=(1.0, 1.5, 1.0))


def test_bad_networks_are_refused():
    specs = (PoolSpec(2), DenseSpec(3))
    with pytest.raises(ValueError, match="'MP2' comes first"):
        init_conv_network(specs, (4, 4, 1), BinaryWeights(), np.random.default_rng(0))
    net = _net(BinaryWeights(), "2C3-4", (6, 6, 1))
    with pytest.raises(ValueError, match="do not match"):
        ConvNetwork(BinaryWeights(), net.specs, (6, 6, 1), net.H[:2], net.b[:2])
    with pytest.raises(ValueError, match="rho has 2 factors for 3 layers"):
        conv_step_inplace(net, np.zeros((1, 36)), -np.ones((1, 3)), rho=(1.0, 1.0))


@pytest.mark.parametrize("size", [1, 2, 3])
def test_maxpool_backward_matches_a_loop_over_the_windows(size):
    rng = np.random.default_rng(9)
    v = rng.uniform(-1, 1, size=(2, 7, 7, 3))
    g = rng.normal(size=(2, 7 // size, 7 // size, 3))
    _, q = maxpool_forward(v, size)
    got = maxpool_backward(g, q, v.shape, size)
    expected = np.zeros_like(v)
    for oy in range(7 // size):
        for ox in range(7 // size):
            window = [(oy * size + dy, ox * size + dx) for dy in range(size) for dx in range(size)]
            for a in window:
                others = [(1 - v[:, y, x, :]) / 2 for (y, x) in window if (y, x) != a]
                expected[:, a[0], a[1], :] = g[:, oy, ox, :] * np.prod(others, axis=0)
    np.testing.assert_allclose(got, expected, atol=1e-15)


@pytest.mark.parametrize("size", [1, 2, 3])
def test_deterministic_maxpool_is_the_or_of_each_windows_bits(size):
    rng = np.random.default_rng(11)
    h = np.where(rng.random((3, 8, 7, 4)) < 0.2, 1.0, -1.0).astype(np.float32)
    got = maxpool_deterministic(h, size)
    assert got.shape == (3, 8 // size, 7 // size, 4) and got.dtype == np.float32
    for n, oy, ox, c in np.ndindex(got.shape):
        window = h[n, oy * size : (oy + 1) * size, ox * size : (ox + 1) * size, c]
        assert got[n, oy, ox, c] == (1.0 if (window == 1.0).any() else -1.0)


def test_the_step_damps_an_overshooting_minibatch_as_the_dense_core_does():
    from ebprop.core.convnet import conv_overshoot_gain

    rng = np.random.default_rng(10)
    net = _net(BinaryWeights(), "2C3s2-MP2", (8, 8, 1), n_out=3, scale=4.0)  # saturated, narrow
    x = rng.uniform(0, 1, size=(32, 64))
    y = np.where(rng.random((32, 3)) < 0.5, 1.0, -1.0)
    layers = conv_forward(net, x)
    gain = conv_overshoot_gain(net, layers, y)
    assert 0 < gain < 1
    plain = conv_backward(net, layers, y)
    damped = conv_backward(net, layers, y, gain)
    for p, d in zip(plain, damped, strict=True):
        np.testing.assert_allclose(d, gain * p, rtol=1e-12)
    H0 = [h.copy() for h in net.H]
    conv_step_inplace(net, x, y)
    rows = [layer.rows for layer in layers if layer.stats is not None]
    for h, h0, a, d in zip(net.H, H0, rows, damped, strict=True):
        np.testing.assert_allclose(h - h0, 0.5 * a.T @ d, atol=1e-12)


def test_subnormal_conv_deltas_are_flushed_and_normal_ones_kept(monkeypatch):
    # A saturated conv network in float32: some hidden units have |z| past the range where φ(z)
    # is a normal float32, so their Δ is subnormal unless flushed (as the dense core's Δ are).
    import ebprop.core.convnet as convnet

    rng = np.random.default_rng(11)
    net = _net(BinaryWeights(), "3C3-MP2-4", (8, 8, 1), n_out=3, scale=30.0, dtype=np.float32)
    x = rng.uniform(0, 4, size=(64, 64)).astype(np.float32)  # first-layer |z| up to ~36
    y = np.where(rng.random((64, 3)) < 0.5, 1.0, -1.0).astype(np.float32)
    layers = conv_forward(net, x)
    flushed = conv_backward(net, layers, y, 0.5)
    monkeypatch.setattr(convnet, "flush_subnormals_inplace", lambda a: a)
    raw = conv_backward(net, layers, y, 0.5)
    tiny = np.finfo(np.float32).tiny
    assert any(np.any((r != 0) & (np.abs(r) < tiny)) for r in raw[:-1])  # the case arises
    for r, f in zip(raw, flushed, strict=True):
        subnormal = (r != 0) & (np.abs(r) < tiny)
        np.testing.assert_array_equal(f[~subnormal], r[~subnormal])
        assert np.all(f[subnormal] == 0)
