"""The EBP equations checked against independent computations.

Monte Carlo: sample weights from the posterior and ±1 inputs from their distributions; the sampled
pre-activation moments must match the forward pass's μ and σ². Finite differences: ½ Δ_l ⟨v_{l−1}⟩ᵀ
must be the gradient of Σ_k log Φ(y_k μ_L,k/σ_L,k) with respect to M_l, σ held fixed.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from ebprop.core import (
    BinaryWeights,
    Network,
    RealWeights,
    backward,
    class_log_probabilities,
    dropout_nu,
    forward,
    init_network,
    output_delta,
    output_z,
    predict_deterministic,
    predict_probabilistic,
    step_inplace,
)
from ebprop.core.forward import LayerStats
from ebprop.core.numerics import pdf_over_cdf, sign_mean, sign_units_inplace

FAMILIES = [BinaryWeights(), RealWeights(prior_variance=0.7)]


def _random_net(family, sizes, seed=0, scale=1.5):
    rng = np.random.default_rng(seed)
    H = [rng.normal(0, scale, size=(a, b)) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    b = [rng.normal(0, 0.5, size=n) for n in sizes[1:]]
    return Network(family=family, H=H, b=b)


def _sample_weights(family, net, layer, n, rng):
    """n posterior samples of layer's weights, shape (n, n_in, n_out)."""
    M = net.M[layer]
    if isinstance(family, BinaryWeights):
        return np.where(rng.random((n, *M.shape)) < (1 + M) / 2, 1.0, -1.0)
    return M + np.sqrt(family.prior_variance) * rng.standard_normal((n, *M.shape))


def _check_moments(samples, mu, var):
    """Sampled mean and variance of (n, units) samples agree with μ and σ² (units,)."""
    n = samples.shape[0]
    # Mean: within 5 standard errors. Variance: within 5 standard errors of the sample variance.
    assert np.all(np.abs(samples.mean(0) - mu) < 5 * np.sqrt(var / n))
    m4 = ((samples - samples.mean(0)) ** 4).mean(0)
    se_var = np.sqrt((m4 - var**2) / n)
    assert np.all(np.abs(samples.var(0) - var) < 5 * se_var + 1e-12)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
@pytest.mark.parametrize("keep", [None, 0.8])
def test_first_layer_moments_match_monte_carlo(family, keep):
    rng = np.random.default_rng(1)
    sizes = (12, 5, 3)
    net = _random_net(family, sizes)
    x = rng.normal(0, 1.0, size=(1, sizes[0]))
    nu = dropout_nu(keep)
    s0 = forward(net, x, nu)[0]
    n = 200_000
    W = _sample_weights(family, net, 0, n, rng)
    if nu > 0:
        # The analytic dropout of the authors adds ν M² x² to the variance: the variance of a
        # model where the weight-mean part is multiplied by noise ξ with E ξ = 1, Var ξ = ν.
        xi = 1 + np.sqrt(nu) * np.where(rng.random((n, sizes[0], 1)) < 0.5, 1.0, -1.0)
        W = net.M[0] * xi + (W - net.M[0])
    # The +1 in c and σ² counts the bias as a weight on a constant input with unit variance.
    bias = net.b[0] + rng.standard_normal((n, sizes[1]))
    pre = (np.einsum("j,njk->nk", x[0], W) + bias) / np.sqrt(sizes[0] + 1)
    _check_moments(pre, s0.mu[0], s0.sigma[0] ** 2)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_deeper_layer_moments_match_monte_carlo(family):
    rng = np.random.default_rng(2)
    sizes = (6, 15, 4)
    net = _random_net(family, sizes, scale=0.8)
    x = rng.normal(0, 1.0, size=(1, sizes[0]))
    s0, s1 = forward(net, x)
    n = 200_000
    # Hidden units: independent ±1 with P(+1) = Φ(z) of the first layer.
    v = np.where(rng.random((n, sizes[1])) < stats.norm.cdf(s0.z[0]), 1.0, -1.0)
    W = _sample_weights(family, net, 1, n, rng)
    bias = net.b[1] + rng.standard_normal((n, sizes[2]))
    pre = (np.einsum("nj,njk->nk", v, W) + bias) / np.sqrt(sizes[1] + 1)
    _check_moments(pre, s1.mu[0], s1.sigma[0] ** 2)
    # And the unit statistics: ⟨v⟩ = 2Φ(μ/σ) − 1.
    assert np.allclose(s1.v, 2 * stats.norm.cdf(s1.mu / s1.sigma) - 1)


def test_moments_in_closed_form_for_a_hand_worked_binary_layer():
    # One input x = 2, M = tanh(H) = 0.5, bias 0.25: μ = (1 + 0.25)/√2, σ² = ((1 − 0.25)·4 + 1)/2.
    net = Network(BinaryWeights(), H=[np.array([[np.arctanh(0.5)]])], b=[np.array([0.25])])
    (s,) = forward(net, np.array([[2.0]]))
    assert np.isclose(s.mu[0, 0], 1.25 / np.sqrt(2))
    assert np.isclose(s.sigma[0, 0] ** 2, 4.0 / 2)


def _frozen_sigma_objective(net, Ms, x, y, sigmas):
    """Σ_k log Φ(y_k μ_L,k/σ_L,k) summed over the batch, with every σ_l frozen."""
    m = x
    for layer, (M, b, sigma) in enumerate(zip(Ms, net.b, sigmas, strict=True)):
        mu = (m @ M + b) / np.sqrt(M.shape[0] + 1)
        if layer == len(Ms) - 1:
            return special.log_ndtr(y * mu / sigma).sum()
        m = special.erf(mu / sigma / np.sqrt(2))


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_backward_is_the_gradient_with_sigma_fixed(family):
    rng = np.random.default_rng(3)
    sizes = (5, 7, 6, 3)
    net = _random_net(family, sizes, scale=0.6)
    x = rng.normal(0, 1, size=(4, sizes[0]))
    y = np.where(rng.random((4, sizes[-1])) < 0.5, 1.0, -1.0)
    st = forward(net, x)
    deltas = backward(net, st, y)
    sigmas = [s.sigma for s in st]
    inputs = [x] + [s.v for s in st[:-1]]
    eps = 1e-6
    for layer in range(len(sizes) - 1):
        analytic = 0.5 * inputs[layer].T @ deltas[layer]
        numeric = np.zeros_like(analytic)
        for idx in np.ndindex(analytic.shape):
            Ms = [m.copy() for m in net.M]
            Ms[layer][idx] += eps
            up = _frozen_sigma_objective(net, Ms, x, y, sigmas)
            Ms[layer][idx] -= 2 * eps
            down = _frozen_sigma_objective(net, Ms, x, y, sigmas)
            numeric[idx] = (up - down) / (2 * eps)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_update_is_half_delta_times_inputs_summed_over_the_batch():
    rng = np.random.default_rng(4)
    net = _random_net(BinaryWeights(), (4, 3, 2), scale=0.5)
    H0 = [h.copy() for h in net.H]
    b0 = [b.copy() for b in net.b]
    x = rng.normal(size=(5, 4))
    y = np.where(rng.random((5, 2)) < 0.5, 1.0, -1.0)
    st = forward(net, x)
    deltas = backward(net, st, y)
    step_inplace(net, x, y)
    expected_H1 = H0[1] + 0.5 * sum(np.outer(st[0].v[i], deltas[1][i]) for i in range(5))
    np.testing.assert_allclose(net.H[1], expected_H1)
    np.testing.assert_allclose(net.b[0], b0[0] + 0.5 * deltas[0].sum(0))
    np.testing.assert_allclose(net.M[1], np.tanh(net.H[1]))  # means refreshed
    np.testing.assert_allclose(net.M2[0], np.tanh(net.H[0]) ** 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mills_ratio_matches_naive_formula_where_finite(dtype):
    t = np.linspace(-30, 30, 2001).astype(dtype)
    naive = stats.norm.pdf(t.astype(np.float64)) / stats.norm.cdf(t.astype(np.float64))
    ok = np.isfinite(naive) & (stats.norm.cdf(t.astype(np.float64)) > 1e-300)
    r = pdf_over_cdf(t)
    assert r.dtype == dtype
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(r[ok], naive[ok], rtol=rtol, atol=1e-30)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mills_ratio_is_finite_with_the_right_asymptote(dtype):
    t = np.array([-1e4, -1e3, -50.0, 0.0, 50.0, 1e3, 1e4], dtype=dtype)
    r = pdf_over_cdf(t)
    assert np.all(np.isfinite(r)) and np.all(r >= 0)
    np.testing.assert_allclose(r[:3], -t[:3], rtol=1e-3)  # φ(t)/Φ(t) → −t as t → −∞
    assert np.all(r[4:] < 1e-30)  # → 0 as t → +∞


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("y", [1.0, -1.0])
def test_output_delta_pushes_confident_wrong_outputs_the_right_way(dtype, y):
    z = np.array([[-1e4, -100.0, -3.0, 0.0, 3.0, 100.0, 1e4]], dtype=dtype)
    scale = np.full_like(z, 2.0)
    st = LayerStats(z=z, scale=scale, v=sign_mean(z), fan_in=4)
    d = output_delta(np.full_like(z, y), st)
    assert d.dtype == dtype and np.all(np.isfinite(d))
    assert np.all(np.sign(d[d != 0]) == y)  # always toward the target
    wrong = (y * z) < -10
    np.testing.assert_allclose(d[wrong], -2 * y * (y * z[wrong]) / 2.0, rtol=1e-2)
    # Where the naive formula y·2φ(z)/(σ√c Φ(yz)) is finite it agrees.
    z64 = z.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        naive = y * 2 * stats.norm.pdf(z64) / (2.0 * stats.norm.cdf(y * z64))
    ok = np.abs(z64) < 30
    np.testing.assert_allclose(d[ok], naive[ok], rtol=1e-5)


def test_deterministic_readout_uses_sign_weights_and_sign_units_with_ties_to_plus_one():
    H = [np.array([[0.0, -2.0], [3.0, 0.5]]), np.array([[1.0], [-1.0]])]
    b = [np.array([0.0, -1.5]), np.array([0.25])]
    net = Network(BinaryWeights(), H=H, b=b)
    x = np.array([[1.0, -1.0]])
    # W1 = sign(H1) = [[+1, −1], [+1, +1]] (sign(0) = +1); pre = [0, −1.5 − 1 − 1] → h = [+1, −1]
    # output = +1·1 + (−1)·(−1) + 0.25 = 2.25
    np.testing.assert_allclose(predict_deterministic(net, x), [[2.25]])
    real = Network(RealWeights(), H=H, b=b)
    # W = H: pre = [0 − 3, −2 − 0.5 − 1.5] = [−3, −4] → h = [−1, −1]; out = −1 + 1 + 0.25
    np.testing.assert_allclose(predict_deterministic(real, x), [[0.25]])


def test_class_probabilities_condition_on_exactly_one_positive_unit():
    z = np.array([[0.3, -1.2, 2.0]])
    p = np.exp(class_log_probabilities(z))
    phi = stats.norm.cdf(z[0])
    joint = np.array([phi[k] * np.prod(np.delete(1 - phi, k)) for k in range(3)])
    np.testing.assert_allclose(p[0], joint / joint.sum())
    # One output unit: P(class 1) = Φ(z); extreme z stays finite and normalised.
    p1 = np.exp(class_log_probabilities(np.array([[0.5], [-1e4], [1e4]])))
    np.testing.assert_allclose(p1[0], [stats.norm.cdf(-0.5), stats.norm.cdf(0.5)])
    np.testing.assert_allclose(p1.sum(1), 1.0)
    big = np.exp(class_log_probabilities(np.array([[1e4, -1e4, 3.0]])))
    assert np.all(np.isfinite(big)) and np.isclose(big.sum(), 1.0) and big[0, 0] > 0.99


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_initialisation_has_the_requested_variance(family):
    net = init_network((400, 300, 2), family, np.random.default_rng(0), init_variance=2.0)
    assert np.isclose(net.H[0].var(), 2.0 / 400, rtol=0.02)
    assert np.all(np.abs(net.H[0]) <= np.sqrt(3 * 2.0 / 400))
    assert np.isclose(net.H[1].var(), 2.0 / 300, rtol=0.2)
    assert all(np.all(b == 0) for b in net.b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_the_library_allocates_parameters_on_cache_lines_with_the_same_draws(family, dtype):
    from ebprop.core.network import ALIGNMENT, aligned_empty

    net = init_network((37, 53, 3), family, np.random.default_rng(4), dtype=dtype)
    for a in net.H + net.M + net.M2:
        assert a.ctypes.data % ALIGNMENT == 0 and a.flags.c_contiguous and a.flags.writeable
    # the same random stream and rounding as drawing and casting directly
    rng = np.random.default_rng(4)
    for n_in, n_out, h in ((37, 53, net.H[0]), (53, 3, net.H[1])):
        a = np.sqrt(3.0) * np.sqrt(1.0 / n_in)  # init_network's half-width, to the bit
        np.testing.assert_array_equal(h, rng.uniform(-a, a, size=(n_in, n_out)).astype(dtype))
    for shape in [(0,), (1, 1), (7, 5, 3)]:
        x = aligned_empty(shape, dtype)
        assert x.shape == shape and x.dtype == dtype and x.flags.c_contiguous
        assert x.size == 0 or x.ctypes.data % ALIGNMENT == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_variance_stays_positive_with_saturated_weights_and_huge_inputs(dtype):
    # Σx² − x²@M² is 0 in exact arithmetic when every |M| = 1; rounding must not make σ² < 1/c.
    rng = np.random.default_rng(5)
    H = [np.where(rng.random((784, 30)) < 0.5, 50.0, -50.0).astype(dtype)]
    net = Network(BinaryWeights(), H=H, b=[np.zeros(30, dtype)])
    x = (rng.random((64, 784)) * 1e4).astype(dtype)
    (s,) = forward(net, x)
    assert np.all(np.isfinite(s.z)) and np.all(s.scale >= 1.0)


def test_ebp_p_readout_is_the_sign_mean_of_the_output_z():
    # ⟨v_L⟩ = 2Φ(z_L) − 1: the two EBP-P helpers of predict.py describe the same output.
    net = _random_net(BinaryWeights(), (5, 4, 3), scale=0.7)
    x = np.random.default_rng(6).normal(size=(8, 5))
    np.testing.assert_allclose(
        predict_probabilistic(net, x), 2 * stats.norm.cdf(output_z(net, x)) - 1, atol=1e-12
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_subnormal_deltas_are_flushed_to_zero_and_normal_ones_kept(dtype):
    from ebprop.core.backward import hidden_delta, output_delta
    from ebprop.core.numerics import flush_subnormals_inplace

    tiny = np.finfo(dtype).tiny
    a = np.array([tiny, -tiny, tiny / 4, -tiny / 2, 0.0, 1.0, -3e-3], dtype=dtype)
    flush_subnormals_inplace(a)
    np.testing.assert_array_equal(a, np.array([tiny, -tiny, 0, 0, 0, 1.0, -3e-3], dtype=dtype))
    # A saturated unit (|z| past the dtype's normal range of φ(z)): φ(z)·2/scale is subnormal
    # without the flush (checked here independently), and Δ must hold 0 there, not a subnormal.
    z = np.array([[0.5, 13.3 if dtype == np.float32 else 37.7, -2.0]], dtype=dtype)
    scale = np.ones_like(z)
    raw = 2.0 * np.exp(-0.5 * z.astype(np.float64) ** 2) / np.sqrt(2 * np.pi)
    assert 0 < raw[0, 1] < tiny
    st = LayerStats(z=z, scale=scale, v=sign_mean(z), fan_in=4)
    upstream = np.ones((1, 2), dtype=dtype)
    M_next = np.ones((3, 2), dtype=dtype)
    d = hidden_delta(upstream, M_next, st)
    assert d[0, 1] == 0 and d[0, 0] != 0 and d[0, 2] != 0
    y = np.array([[1.0, 1.0, -1.0]], dtype=dtype)
    out = output_delta(y, st)
    assert not np.any((out != 0) & (np.abs(out) < tiny))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sign_units_are_plus_one_from_zero_up_including_negative_zero(dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    pre = np.array([-np.inf, -3.5, -tiny, -0.0, 0.0, tiny, 2.0, np.inf], dtype=dtype)
    expected = np.where(pre >= 0, 1, -1).astype(dtype)  # the definition, sign(0) = +1
    got = sign_units_inplace(pre)
    assert got is pre and got.dtype == dtype
    np.testing.assert_array_equal(got, expected)
    assert not np.signbit(got[3])  # −0.0 gives +1, not −1
