"""The optimised core gives the same parameters as the straightforward baseline (issue 7).

The baseline (:mod:`ebprop.reference`, the test oracle) is an independent
one-line-per-equation transcription; after 100 minibatches both must agree to float round-off.
"""

from __future__ import annotations

import numpy as np
import pytest

from ebprop.core import Network, init_network, make_family, step_inplace
from ebprop.core.families import BinaryWeights, RealWeights
from ebprop.reference import baseline_step
from ebprop.trainer import encode_targets, run_minibatches_inplace

SIZES = (20, 15, 12, 3)
N_BATCHES = 100


def _data(batch: int, dtype: type, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = batch * N_BATCHES
    X = rng.normal(size=(n, SIZES[0])).astype(dtype)
    return X, encode_targets(rng.integers(0, SIZES[-1], n), SIZES[-1], dtype)


def _train_both(weights: str, nu: float, batch: int, dtype: type, block_bytes: int):
    rng = np.random.default_rng(7)
    net = init_network(SIZES, make_family(weights), rng, dtype=dtype)
    net.block_bytes = block_bytes
    H = [h.copy() for h in net.H]
    b = [x.copy() for x in net.b]
    X, Y = _data(batch, dtype, rng)
    for s in range(0, X.shape[0], batch):
        out = step_inplace(net, X[s : s + batch], Y[s : s + batch], nu)
        ref = baseline_step(H, b, X[s : s + batch], Y[s : s + batch], weights == "binary", nu)
        np.testing.assert_allclose(out, ref, rtol=0, atol=50 * np.finfo(dtype).eps)
    return net, H, b


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("nu", [0.0, 0.84])
@pytest.mark.parametrize("weights", ["binary", "real"])
def test_optimised_equals_baseline_after_100_minibatches(weights, nu, batch, dtype):
    # block_bytes=1 forces 8-row blocks, so the blocked update crosses block boundaries.
    net, H, b = _train_both(weights, nu, batch, dtype, block_bytes=1)
    atol = 100 * np.finfo(dtype).eps
    for layer in range(len(SIZES) - 1):
        assert len(net.row_blocks(layer)) == -(-SIZES[layer] // 8)
        np.testing.assert_allclose(net.H[layer], H[layer], rtol=0, atol=atol)
        np.testing.assert_allclose(net.b[layer], b[layer], rtol=0, atol=atol)
    # The training did move the parameters (the comparison is not of two untouched copies).
    assert np.abs(net.b[-1]).max() > 1e-3


def test_block_size_does_not_change_results():
    one_block, _, _ = _train_both("binary", 0.0, 5, np.float64, block_bytes=2**30)
    many_blocks, _, _ = _train_both("binary", 0.0, 5, np.float64, block_bytes=1)
    for a, c in zip(one_block.H + one_block.M2, many_blocks.H + many_blocks.M2, strict=True):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("weights", ["binary", "real"])
def test_cached_moments_stay_in_step_with_H(weights):
    net, _, _ = _train_both(weights, 0.0, 5, np.float64, block_bytes=1)
    mean = np.tanh if weights == "binary" else (lambda h: h)
    for layer in range(len(SIZES) - 1):
        np.testing.assert_allclose(net.M[layer], mean(net.H[layer]), rtol=1e-15, atol=0)
        np.testing.assert_allclose(net.M2[layer], net.M[layer] ** 2, rtol=1e-15, atol=0)


def test_real_weights_share_M_with_H_and_binary_do_not():
    rng = np.random.default_rng(0)
    real = init_network((4, 3, 2), RealWeights(), rng)
    binary = init_network((4, 3, 2), BinaryWeights(), rng)
    assert all(m is h for m, h in zip(real.M, real.H, strict=True))
    assert not any(np.shares_memory(m, h) for m, h in zip(binary.M, binary.H, strict=True))


def test_refresh_after_replacing_H_copies_the_new_means():
    rng = np.random.default_rng(0)
    net = init_network((4, 3, 2), RealWeights(), rng)
    net.H[0] = np.full((4, 3), 0.5, dtype=net.dtype)  # M[0] is now a separate, stale array
    net.refresh_moments_inplace(0)
    np.testing.assert_array_equal(net.M[0], 0.5)
    np.testing.assert_array_equal(net.M2[0], 0.25)


@pytest.mark.parametrize("family", [BinaryWeights(), RealWeights(prior_variance=0.7)])
def test_hidden_variance_sum_matches_colsum_form(family):
    rng = np.random.default_rng(3)
    m = rng.uniform(-1, 1, size=(6, 9))
    M2 = rng.uniform(0, 1, size=(9, 4))
    # Σ_j E(W_jk²) − ⟨v_j⟩² M²_jk with E(W²) = 1 (binary) or M² + v (real), term by term.
    second_moment = np.ones_like(M2) if family.name == "binary" else M2 + family.prior_variance
    expected = second_moment.sum(axis=0) - (m * m) @ M2
    np.testing.assert_allclose(family.hidden_variance_sum(m, M2), expected, rtol=1e-13)


def test_scratch_buffer_is_reused_and_resized():
    net = Network(family=BinaryWeights(), H=[np.zeros((16, 3))], b=[np.zeros(3)])
    first = net.scratch(0, 8)
    assert first.shape == (8, 3)
    assert np.shares_memory(net.scratch(0, 4), first)
    assert net.scratch(0, 12).shape == (12, 3)


def test_run_minibatches_matches_baseline_with_partial_last_batch():
    rng = np.random.default_rng(1)
    net = init_network(SIZES, make_family("binary"), rng, dtype=np.float64)
    H = [h.copy() for h in net.H]
    b = [x.copy() for x in net.b]
    X, Y = _data(1, np.float64, rng)  # 100 samples, batches of 7: the last one has 2
    order = rng.permutation(X.shape[0])
    position, _ = run_minibatches_inplace(net, X, Y, order, 7)
    assert position == X.shape[0]
    for s in range(0, X.shape[0], 7):
        idx = order[s : s + 7]
        baseline_step(H, b, X[idx], Y[idx], True)
    for a, c in zip(net.H, H, strict=True):
        np.testing.assert_allclose(a, c, rtol=0, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("nu", [0.0, 0.84])
@pytest.mark.parametrize("weights", ["binary", "real"])
def test_fused_kernels_equal_baseline_after_100_minibatches(weights, nu, dtype):
    # Issue 13: the compiled, fused training loop against the same independent transcription.
    kernels = pytest.importorskip("ebprop.kernels")
    if not kernels.available():
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(7)
    net = init_network(SIZES, make_family(weights), rng, dtype=dtype)
    H = [h.copy() for h in net.H]
    b = [x.copy() for x in net.b]
    X, Y = _data(5, dtype, rng)
    X[:, :8] = 0  # inputs that are zero in every sample take the fused path's sparse branch
    position, _ = kernels.run_minibatches_fused(net, X, Y, np.arange(X.shape[0]), 5, nu)
    assert position == X.shape[0]
    for s in range(0, X.shape[0], 5):
        baseline_step(H, b, X[s : s + 5], Y[s : s + 5], weights == "binary", nu)
    atol = 100 * np.finfo(dtype).eps
    for layer in range(len(SIZES) - 1):
        np.testing.assert_allclose(net.H[layer], H[layer], rtol=0, atol=atol)
        np.testing.assert_allclose(net.b[layer], b[layer], rtol=0, atol=atol)
    assert np.abs(net.b[-1]).max() > 1e-3
