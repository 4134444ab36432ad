"""The fused, compiled training loop (ebprop.kernels) against the NumPy reference (issue 13)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from functools import partial

import numpy as np
import pytest

from ebprop.core import Reinforcement, init_network, make_family
from ebprop.trainer import encode_targets, minibatch_factors
from ebprop.trainer import run_minibatches_inplace as _train_loop

pytest.importorskip("numba")
from ebprop.kernels import available, refresh_moments, run_minibatches_fused  # noqa: E402

SIZES = (20, 15, 12, 3)
# The NumPy reference loop (n_jobs=0 once train.py can pick the fused kernels by itself).
run_minibatches_inplace = (
    partial(_train_loop, n_jobs=0)
    if "n_jobs" in inspect.signature(_train_loop).parameters
    else _train_loop
)


def _pair(weights: str, dtype: type, sizes=SIZES, **options):
    # two equal networks; ``options`` are Network options (fit_intercept=False: no biases)
    return [
        init_network(sizes, make_family(weights), np.random.default_rng(7), dtype=dtype, **options)
        for _ in range(2)
    ]


def _data(n: int, dtype: type, sparse: bool, seed: int = 1, n_in: int = SIZES[0], n_out=3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in)).astype(dtype)
    if sparse:  # MNIST-like: some inputs are zero in every sample, others in some samples
        X[:, : n_in // 4] = 0
        X[rng.random((n, n_in)) < 0.5] = 0
    return X, encode_targets(rng.integers(0, n_out, n), n_out, dtype)


def _same(a, b) -> None:
    for x, y in zip(a.H + a.b + a.M + a.M2, b.H + b.b + b.M + b.M2, strict=True):
        np.testing.assert_array_equal(x, y)


def test_available():
    assert available()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("trans_a", "trans_b"), [(False, False), (True, False), (False, True)])
def test_gemm_transposes_either_operand_on_strided_views(dtype, trans_a, trans_b):
    import numba as nb

    from ebprop.kernels._blas import GEMM_ADDRESSES, gemm  # the BLAS call itself

    @nb.njit
    def call(a, b, c, beta, ta, tb, blas, r0, r1):  # column/row views, as the layer pass takes
        gemm(a[:, r0:r1] if ta else a[r0:r1], b, c[2:9], beta, ta, tb, blas)

    rng = np.random.default_rng(3)
    r0, r1, k, n = 4, 11, 5, 13  # the block r0:r1 of a wider operand; C rows 2:9 of a taller one
    a = rng.normal(size=(k, 20) if trans_a else (20, k)).astype(dtype)
    b = rng.normal(size=(n, k) if trans_b else (k, n)).astype(dtype)
    c = rng.normal(size=(12, n)).astype(dtype)
    a_blk = a[:, r0:r1].T if trans_a else a[r0:r1]
    want = c.astype(np.float64).copy()
    b_op = (b.T if trans_b else b).astype(np.float64)
    want[2:9] = a_blk.astype(np.float64) @ b_op + 0.5 * want[2:9]
    call(a, b, c, 0.5, trans_a, trans_b, GEMM_ADDRESSES, r0, r1)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c, want, rtol=tol, atol=tol)  # rows outside 2:9 untouched too


@pytest.mark.parametrize(("dtype", "max_ulp"), [(np.float32, 6), (np.float64, 4)])
def test_tanh_within_a_few_ulp_of_exact(dtype, max_ulp):
    # float32 is a rational function (5.94 ulp at worst over every float32:
    # fit_rational32.py tanh --check).
    rng = np.random.default_rng(0)
    h = np.concatenate(
        [rng.uniform(-25, 25, 5000), np.geomspace(1e-30, 30, 2000), -np.geomspace(1e-30, 30, 2000)]
    )
    dense = np.linspace(0, 10, 2 * 4500)  # every region of the float32 rational, finely
    net = init_network((4, 4500), make_family("binary"), rng, dtype=dtype)
    net.H[0][...] = np.concatenate([h, dense]).reshape(4, 4500).astype(dtype)
    refresh_moments(net)
    expected = np.tanh(net.H[0].astype(np.float64))
    ulp = np.spacing(np.abs(expected).astype(dtype)).astype(np.float64)
    err = np.abs(net.M[0] - expected) / ulp
    assert np.max(err) <= max_ulp
    assert np.max(err) > 0  # the kernels' own tanh, not numpy's, was tested
    np.testing.assert_array_equal(net.M2[0], net.M[0] * net.M[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_odd_bounded_and_saturating(dtype):
    rng = np.random.default_rng(1)
    h = np.concatenate([rng.uniform(0, 12, 4000), [0.0, 9.0, 19.5, 25.0, 1e4, 3e38]])
    net = init_network((2, h.size), make_family("binary"), rng, dtype=dtype)
    net.H[0][...] = np.stack([h, -h]).astype(dtype)
    refresh_moments(net)
    np.testing.assert_array_equal(net.M[0][1], -net.M[0][0])  # odd, bit for bit
    assert np.all(np.abs(net.M[0]) <= 1)
    assert net.M[0][0, -6] == 0
    assert np.all(net.M[0][0, -3:] == 1)  # far out, exactly ±1 as numpy.tanh gives


def _plain_refresh(H, M, S, rho, affine, binary):
    # the kernels' update of H and M as a plain element-by-element loop calling the scalar tanh
    import numba as nb

    from ebprop.core.update import PARAMETER_BOUND
    from ebprop.kernels._vecmath import tanh  # the kernels' scalar tanh (private on purpose)

    @nb.njit(fastmath={"contract"}, error_model="numpy")
    def apply(h, s, m, r, bound, affine, binary):  # pragma: no cover - compiled
        for k in range(h.shape[0]):
            x = h[k] * r + s[k] if affine else h[k]
            x = min(max(x, -bound), bound)
            h[k] = x
            if binary:
                m[k] = tanh(x)

    dt = H.dtype.type
    apply(H.reshape(-1), S.reshape(-1), M.reshape(-1), dt(rho), dt(PARAMETER_BOUND), affine, binary)


def _awkward_values(shape, dtype, seed):
    # every region of tanh and of the clip: tiny, subnormal, ±0, saturated, beyond the bound
    rng = np.random.default_rng(seed)
    h = rng.uniform(-12, 12, shape)
    flat = h.reshape(-1)
    flat[::7] *= 1e-3
    flat[1::11] = rng.choice(
        [0.0, -0.0, 1e-40, -1e-40, 9.0, -9.0, 30.0, -1e4, 3e38], flat[1::11].size
    )
    return h.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("n_out", [1, 10, 16, 37, 200])
def test_refresh_gives_the_bits_of_a_plain_loop(dtype, binary, n_out):
    # clip_block and refresh_rows (explicit vectors of the CPU's width for float32, with masked
    # tails) against the element-by-element loop they replace, bit for bit, -0.0 included
    from ebprop.kernels import _fused  # private on purpose: the kernels themselves

    H = _awkward_values((23, n_out), dtype, seed=n_out)
    M = np.full_like(H, 5.0)
    H_ref, M_ref = H.copy(), M.copy()
    _fused.clip_block(H, M, 2, 21, 0, n_out, binary)  # whole rows (contiguous)
    _plain_refresh(H_ref[2:21], M_ref[2:21], H_ref[2:21], 1.0, False, binary)
    k0, k1 = (1, n_out - 1) if n_out > 2 else (0, n_out)
    _fused.clip_block(H, M, 21, 23, k0, k1, binary)  # part rows
    part_h, part_m = H_ref[21:, k0:k1].copy(), M_ref[21:, k0:k1].copy()
    _plain_refresh(part_h, part_m, part_h, 1.0, False, binary)
    H_ref[21:, k0:k1], M_ref[21:, k0:k1] = part_h, part_m
    # the sparse path: H ← clip(ρH + S) on listed rows
    rows = np.array([0, 1], np.int64)
    S = _awkward_values((2, n_out), dtype, seed=99)
    _fused.refresh_rows(H, M, S, rows, 0, 2, 0, n_out, 0.75, binary)
    _plain_refresh(H_ref[:2], M_ref[:2], S, 0.75, True, binary)
    bits = np.int32 if dtype == np.float32 else np.int64
    np.testing.assert_array_equal(H.view(bits), H_ref.view(bits))
    np.testing.assert_array_equal(M.view(bits), M_ref.view(bits))
    if binary:  # written: rows 0:21, and columns k0:k1 of the last two
        assert np.all(np.abs(M[:21]) <= 1) and np.all(np.abs(M[21:, k0:k1]) <= 1)
        assert np.all(M[21:, :k0] == 5.0) and np.all(M[21:, k1:] == 5.0)
    else:
        assert np.all(M == 5.0)  # real weights: M is H, not written here


def _erf_of(x: np.ndarray) -> np.ndarray:
    import numba as nb

    from ebprop.kernels._vecmath import erf  # the forward pass's erf (private on purpose)

    @nb.njit
    def apply(x, out):  # pragma: no cover - compiled
        for i in range(x.shape[0]):
            out[i] = erf(x[i])

    out = np.empty_like(x)
    apply(x, out)
    return out


@pytest.mark.parametrize(("dtype", "max_ulp"), [(np.float32, 8), (np.float64, 2)])
def test_erf_within_a_few_ulp_of_exact(dtype, max_ulp):
    # float32 is a rational function (7.54 ulp at worst over every float32:
    # fit_rational32.py erf --check); float64 is libm's erf.
    from scipy.special import erf

    rng = np.random.default_rng(0)
    x = np.concatenate(
        [rng.uniform(0, 6, 5000), np.geomspace(1e-30, 6, 2000), np.linspace(0, 4.5, 20_000)]
    ).astype(dtype)
    y = _erf_of(x)
    exact = erf(x.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(dtype)).astype(np.float64)
    err = np.abs(y - exact) / ulp
    assert np.max(err) <= max_ulp
    if dtype == np.float32:
        assert np.max(err) > 1  # the rational function, not a correctly rounded libm erf
    np.testing.assert_array_equal(_erf_of(-x), -y)  # odd, bit for bit
    assert np.all(np.abs(y) <= 1)
    assert np.all(y[x >= (3.92 if dtype == np.float32 else 6.0)] == 1)  # as the exact value rounds
    assert _erf_of(np.array([0.0, 1e30, np.inf], dtype)).tolist() == [0.0, 1.0, 1.0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("batch", [1, 5, 7])
@pytest.mark.parametrize("nu", [0.0, 0.84])
@pytest.mark.parametrize("weights", ["binary", "real"])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("intercept", [True, False])
def test_fused_equals_reference_after_100_minibatches(weights, nu, batch, dtype, sparse, intercept):
    ref, fused = _pair(weights, dtype, fit_intercept=intercept)
    H0 = fused.H[-1].copy()
    n = 100 * batch - (3 if batch == 7 else 0)  # batch 7: a ragged last minibatch of 4
    X, Y = _data(n, dtype, sparse)
    order = np.random.default_rng(2).permutation(n)
    pos_r, err_r = run_minibatches_inplace(ref, X, Y, order, batch, nu)
    pos_f, err_f = run_minibatches_fused(fused, X, Y, order, batch, nu)
    assert pos_r == pos_f == n
    assert abs(err_r - err_f) <= 1  # a tie broken differently by round-off at most
    atol = 200 * np.finfo(dtype).eps
    for layer in range(len(SIZES) - 1):
        np.testing.assert_allclose(fused.H[layer], ref.H[layer], rtol=0, atol=atol)
        np.testing.assert_allclose(fused.b[layer], ref.b[layer], rtol=0, atol=atol)
        # The caches other code reads are in step with H.
        np.testing.assert_allclose(fused.M[layer], ref.M[layer], rtol=0, atol=atol)
        np.testing.assert_array_equal(fused.M2[layer], fused.M[layer] ** 2)
    assert np.abs(fused.H[-1] - H0).max() > 1e-3  # training moved the parameters
    if intercept:
        assert np.abs(fused.b[-1]).max() > 1e-3
    else:  # no bias: b is not a parameter, and stays 0 to the bit
        for b in fused.b:
            np.testing.assert_array_equal(b, np.zeros_like(b))


@pytest.mark.parametrize("weights", ["binary", "real"])
@pytest.mark.parametrize("intercept", [True, False])
def test_reinforcement_matches_reference(weights, intercept):
    ref, fused = _pair(weights, np.float64, fit_intercept=intercept)
    X, Y = _data(300, np.float64, sparse=True)
    order = np.arange(300)
    sched = Reinforcement(hidden=1.01, output=0.99, start=0.2, ramp=0.3)
    run_minibatches_inplace(ref, X, Y, order, 5, reinforcement=sched, epoch=0)
    run_minibatches_fused(fused, X, Y, order, 5, rho=minibatch_factors(sched, 3, 0, 300, 0, 5))
    plain, _ = _pair(weights, np.float64, fit_intercept=intercept)
    run_minibatches_fused(plain, X, Y, order, 5)
    for layer in range(len(SIZES) - 1):
        np.testing.assert_allclose(fused.H[layer], ref.H[layer], rtol=0, atol=1e-12)
        np.testing.assert_allclose(fused.b[layer], ref.b[layer], rtol=0, atol=1e-12)
    # ρ changed the result (the test is not of two plain runs).
    assert np.abs(plain.H[0] - fused.H[0]).max() > 1e-3


def test_the_trainer_hands_the_kernels_each_minibatchs_factors():
    # the schedule stays with the trainer: plain until epoch 1.2, then ρ − 1 ramps up over 0.3
    # epochs, and from epoch 1.9 plain again
    sched = Reinforcement(hidden=1.01, output=0.99, start=1.2, ramp=0.3, stop=1.9)
    rho = minibatch_factors(sched, 3, 1, 300, 10, 5)  # epoch 2, from its sample 10
    assert rho.shape == (58, 3) and rho.dtype == np.float64
    for k, position in enumerate(range(10, 300, 5)):
        progress = 1 + position / 300
        w = 0.0 if not 1.2 <= progress < 1.9 else min(1.0, (progress - 1.2) / 0.3)
        assert rho[k].tolist() == pytest.approx([1 + 0.01 * w] * 2 + [1 - 0.01 * w], abs=1e-15)
    assert 0 < rho[20, 0] - 1 < 0.01 and rho[-1].tolist() == [1.0, 1.0, 1.0]
    whole = minibatch_factors(sched, 3, 1, 300, 0, 5)
    np.testing.assert_array_equal(minibatch_factors(sched, 3, 1, 300, 35, 5), whole[7:])
    assert minibatch_factors(None, 3, 0, 300, 0, 5) is None
    # through the trainer's own dispatch: the fused loop trains what the NumPy loop does
    ref, fused = _pair("binary", np.float64)
    X, Y = _data(300, np.float64, sparse=True)
    _train_loop(ref, X, Y, np.arange(300), 5, reinforcement=sched, epoch=1, n_jobs=0)
    _train_loop(fused, X, Y, np.arange(300), 5, reinforcement=sched, epoch=1, n_jobs=1)
    plain = _pair("binary", np.float64)[0]
    _train_loop(plain, X, Y, np.arange(300), 5, n_jobs=1)
    assert np.abs(plain.H[0] - fused.H[0]).max() > 1e-3  # ρ changed the result
    for layer in range(len(SIZES) - 1):
        np.testing.assert_allclose(fused.H[layer], ref.H[layer], rtol=0, atol=1e-12)


def test_fused_loop_refuses_a_factor_table_of_the_wrong_shape():
    net = _pair("binary", np.float32)[0]
    X, Y = _data(50, np.float32, sparse=False)
    with pytest.raises(ValueError, match=r"rho has shape \(4, 3\); give one row of 3 factors "
                       r"for each of the 5 minibatches from start"):  # fmt: skip
        run_minibatches_fused(net, X, Y, np.arange(50), 10, rho=np.ones((4, 3)))


@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("stop_at", [7, 35, 98])
@pytest.mark.parametrize("intercept", [True, False])
def test_resume_is_bit_identical_to_an_uninterrupted_run(n_jobs, stop_at, intercept):
    sizes = (120, 300, 140, 3)  # layers 1–2 have enough weights for two threads to split them
    whole, part = _pair("binary", np.float32, sizes, fit_intercept=intercept)
    X, Y = _data(100, np.float32, sparse=True, n_in=120)
    order = np.random.default_rng(3).permutation(100)
    rho = minibatch_factors(Reinforcement(hidden=1.001), 3, 0, 100, 0, 7)
    done = run_minibatches_fused(whole, X, Y, order, 7, rho=rho, n_jobs=n_jobs)
    seen = []

    def stop(position: int, n_errors: int) -> bool:
        seen.append(position)
        return position >= stop_at

    position, errors_1 = run_minibatches_fused(
        part, X, Y, order, 7, on_batch=stop, rho=rho, n_jobs=n_jobs
    )
    assert position == seen[-1] == min(-(-stop_at // 7) * 7, 100)
    assert seen == list(range(7, position + 1, 7))
    # M and M² are current when the call returns (M² is squared per block inside it, and into
    # the network's array at the end); a checkpoint copies H and b only.
    for layer in range(3):
        np.testing.assert_array_equal(part.M2[layer], part.M[layer] ** 2)
    saved = [h.copy() for h in part.H], [b.copy() for b in part.b]
    resumed = init_network(sizes, make_family("binary"), np.random.default_rng(9), dtype=np.float32,
                           fit_intercept=intercept)  # fmt: skip
    for mine, theirs in zip(resumed.H + resumed.b, saved[0] + saved[1], strict=True):
        mine[...] = theirs
    end, errors_2 = run_minibatches_fused(
        resumed, X, Y, order, 7, start=position, rho=rho[position // 7 :], n_jobs=n_jobs
    )
    assert end == 100 and errors_1 + errors_2 == done[1]
    _same(resumed, whole)


@pytest.mark.parametrize("weights", ["binary", "real"])
def test_moments_are_current_when_on_batch_raises(weights):
    net = init_network((40, 140, 3), make_family(weights), np.random.default_rng(0))
    X, Y = _data(50, np.float32, sparse=False, n_in=40)

    def fail(position: int, n_errors: int) -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_minibatches_fused(net, X, Y, np.arange(50), 10, on_batch=fail)
    for H, M, M2 in zip(net.H, net.M, net.M2, strict=True):
        assert (M is H) == (weights == "real")
        np.testing.assert_array_equal(M2, M * M)
    assert np.abs(net.b[0]).max() > 0  # the first minibatch did update the network


@pytest.mark.parametrize("weights", ["binary", "real"])
def test_moments_split_over_threads_give_the_same_bits(weights):
    from ebprop.kernels import _fused  # the kernels themselves (private on purpose)

    binary = weights == "binary"
    # 37 × 53: every split ends inside a row and inside a vector of 8 lanes
    H = np.random.default_rng(4).normal(scale=3, size=(37, 53)).astype(np.float32)
    M = np.empty_like(H) if binary else H
    M2 = np.empty_like(H)
    _fused.moments(H, M, M2, binary)
    np.testing.assert_allclose(M, np.tanh(H) if binary else H, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(M2, M * M)
    for tiles in (1, 2, 3, 7):
        Mt = np.full_like(H, np.nan) if binary else H
        M2t = np.full_like(H, np.nan)
        _fused.moments_parallel(H, Mt, M2t, binary, False, tiles)
        np.testing.assert_array_equal(Mt, M)
        assert np.isnan(M2t).all()  # square=False leaves M² alone
        _fused.moments_parallel(H, Mt, M2t, binary, True, tiles)
        np.testing.assert_array_equal(M2t, M2)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("intercept", [True, False])
def test_two_threads_are_deterministic_and_equal_one_thread_to_round_off(sparse, intercept):
    sizes = (120, 260, 200, 3)  # layers 1–2 have enough weights to be split over two threads
    family = make_family("binary")
    runs = [
        init_network(sizes, family, np.random.default_rng(0), fit_intercept=intercept)
        for _ in range(3)
    ]
    X, Y = _data(200, np.float32, sparse=sparse, n_in=120)
    order = np.arange(200)
    for net, jobs in zip(runs, (2, 2, 1), strict=True):
        run_minibatches_fused(net, X, Y, order, 10, n_jobs=jobs)
    _same(runs[0], runs[1])
    for a, b in zip(runs[0].H, runs[2].H, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_without_intercept_the_statistics_and_half_delta_are_the_cores_bits(dtype):
    # From a layer's sums on, the kernels' arithmetic without bias is the core's to the bit:
    # σ²c floored at ε with no +1, z = μ/σ with b unread (core.forward.layer_forward), and ½Δ
    # flushed as core.update's with b left alone. (⟨v⟩ is the kernels' erf, within a few ulp.)
    from ebprop.core.forward import layer_forward
    from ebprop.core.numerics import flush_subnormals_inplace
    from ebprop.kernels import _activations as A  # the kernels themselves (private on purpose)

    rng = np.random.default_rng(5)
    eps, tiny = np.finfo(dtype).eps, np.finfo(dtype).tiny
    m = rng.normal(size=(6, 9)).astype(dtype)
    m[1] = 0  # an all-zero input: μ = 0 over σ = √ε, z = 0
    M = rng.uniform(-1, 1, size=(9, 7)).astype(dtype)
    var_sum = rng.uniform(0, 3, size=(6, 7)).astype(dtype)
    var_sum[0, :3] = [0, -1e-3, eps / 2]  # at or below the floor (a saturated layer)
    var_sum[1] = 0
    b = np.full(7, 5.0, dtype)  # never read
    want = layer_forward(m, M, M * M, b, var_sum.copy(), intercept=False)
    z, scale, v = (np.empty((6, 7), dtype) for _ in range(3))
    # σ²c − 1 = 0 + 0·Σx² + 1·var_sum: the summed variance handed in whole
    A.finalize(m @ M, var_sum, b, 0.0, 1.0, 0.0, np.zeros(6, dtype), z, scale, v, False)
    np.testing.assert_array_equal(scale, want.scale)
    np.testing.assert_array_equal(z, want.z)
    np.testing.assert_allclose(v, want.v, rtol=0, atol=16 * eps)
    assert np.all(scale[0, :3] == np.sqrt(dtype(eps))) and np.all(z[1] == 0)
    delta = rng.normal(size=(6, 7)).astype(dtype)
    delta[2, 0] = tiny  # halved: subnormal, flushed to 0
    half = flush_subnormals_inplace(0.5 * delta)
    A.halve_and_bias(delta, b, False)
    np.testing.assert_array_equal(delta, half)
    assert delta[2, 0] == 0 and np.all(b == 5.0)


@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("weights", ["binary", "real"])
def test_without_intercept_the_kernels_neither_read_nor_update_b(weights, n_jobs):
    sizes = (120, 260, 200, 3)  # layers 1–2 have enough weights to be split over two threads
    zero, five = _pair(weights, np.float32, sizes, fit_intercept=False)
    for b in five.b:
        b[...] = 5.0  # a network without intercept ignores whatever b holds, as the core does
    X, Y = _data(200, np.float32, sparse=True, n_in=120)
    for net in (zero, five):
        run_minibatches_fused(net, X, Y, np.arange(200), 10, n_jobs=n_jobs)
    for a, b in zip(zero.H + zero.M, five.H + five.M, strict=True):
        np.testing.assert_array_equal(a, b)
    assert all(np.all(b == 5.0) for b in five.b) and all(np.all(b == 0) for b in zero.b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weights", ["binary", "real"])
@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("sizes", [(200, 3), (200, 260, 6, 3)])
def test_without_intercept_damped_minibatches_follow_the_reference(
    sizes, n_jobs, weights, dtype, monkeypatch
):
    # Saturated weights, positive inputs, learnable labels, batch 40: the overshoot control
    # damps minibatches (its K and floor lose the bias's 1 as σ²c does); the kernels follow the
    # NumPy core there, on one thread or two (200 × 260 is split in two row tiles), with the
    # output layer reading x (no hidden layer) or hidden units.
    import ebprop.core.step as step_module
    from ebprop.core.overshoot import overshoot_gain

    gains: list[float] = []

    def spy(*args):
        gains.append(overshoot_gain(*args))
        return gains[-1]

    monkeypatch.setattr(step_module, "overshoot_gain", spy)
    options = dict(init_variance=30.0, dtype=dtype, fit_intercept=False)
    ref, fused = (
        init_network(sizes, make_family(weights), np.random.default_rng(0), **options)
        for _ in range(2)
    )
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 1, size=(320, 200)).astype(dtype)
    X[:, :66] = 0  # a third of the inputs zero: the first layer's sparse path
    Y = encode_targets((X @ rng.normal(size=(200, 3))).argmax(axis=1), 3, dtype)
    order = np.random.default_rng(2).permutation(320)
    run_minibatches_inplace(ref, X, Y, order, 40)
    run_minibatches_fused(fused, X, Y, order, 40, n_jobs=n_jobs)
    assert min(gains) < 0.7  # the control acted
    atol = 200 * np.finfo(dtype).eps
    for layer in range(len(sizes) - 1):
        np.testing.assert_allclose(fused.H[layer], ref.H[layer], rtol=0, atol=atol)
        np.testing.assert_allclose(fused.M[layer], ref.M[layer], rtol=0, atol=atol)
        assert np.all(fused.b[layer] == 0)


def _layer_case(sparse: bool, weights: str):
    # One layer's pass: the update of a minibatch (inputs U (B, n_in), ½Δ = D) and the forward
    # sums of the next (F, W), as the engine hands them to the kernel; sparse: both use row
    # lists, and U, F hold only the listed columns.
    rng = np.random.default_rng(11)
    n_in, n_out, B = 50, 37, 5
    H = rng.normal(scale=0.5, size=(n_in, n_out)).astype(np.float32)
    M = H if weights == "real" else np.tanh(H).astype(np.float32)
    x = rng.normal(size=(B, n_in)).astype(np.float32)
    D = rng.normal(scale=0.1, size=(B, n_out)).astype(np.float32)
    F = rng.normal(size=(B, n_in)).astype(np.float32)
    upd = np.sort(rng.choice(n_in, 31, replace=False)) if sparse else np.arange(n_in)
    fwd = np.sort(rng.choice(n_in, 23, replace=False)) if sparse else np.arange(n_in)
    if sparse:
        x[:, np.setdiff1d(np.arange(n_in), upd)] = 0  # the rows left out have zero input
    U = np.ascontiguousarray(x[:, upd]) if sparse else x
    Fk = np.ascontiguousarray(F[:, fwd]) if sparse else F
    return H, M, U, x, D, F, Fk, upd, fwd


def _run_layer(case, sparse: bool, weights: str, tiles: int, parallel: bool):
    from ebprop.kernels import _fused  # the kernel itself (private on purpose)
    from ebprop.kernels._blas import GEMM_ADDRESSES

    H, M, U, _, D, _, Fk, upd, fwd = (a.copy() if isinstance(a, np.ndarray) else a for a in case)
    M = H if weights == "real" else M  # real weights: M is H itself
    B, n_out = D.shape
    mu, var = np.zeros((B, n_out), np.float32), np.zeros((B, n_out), np.float32)
    S = np.zeros((tiles, 8, n_out), np.float32)
    parts = np.full((tiles - 1, 2, B, n_out), np.nan, np.float32)  # must be overwritten
    n_upd, n_fwd = (len(upd), len(fwd)) if sparse else (-1, -1)
    call = _fused.layer_pass_parallel if parallel else _fused.layer_pass_serial
    call(H, M, weights == "binary", 1.0, 8, True, U, D, upd, n_upd,
         True, Fk, Fk * Fk, True, fwd, n_fwd, mu, var, S, parts, GEMM_ADDRESSES)  # fmt: skip
    return H, M, mu, var


@pytest.mark.parametrize("weights", ["binary", "real"])
@pytest.mark.parametrize("sparse", [False, True])
def test_row_tiles_give_the_layer_pass_and_the_same_bits_on_any_thread(sparse, weights):
    case = _layer_case(sparse, weights)
    H0, _, _, x, D, F, _, _, fwd = case
    # The pass, transcribed: H ← H + xᵀ½Δ (rows without input unchanged), M = ⟨W⟩, and the next
    # minibatch's sums F M, F² M² over its non-zero inputs.
    H = H0.astype(np.float64) + x.T.astype(np.float64) @ D.astype(np.float64)
    M = H if weights == "real" else np.tanh(H)
    Fz = np.zeros_like(F, dtype=np.float64)
    Fz[:, fwd] = F[:, fwd]
    want = H, M, Fz @ M, (Fz * Fz) @ (M * M)
    one = _run_layer(case, sparse, weights, 1, parallel=False)
    for tiles in (2, 3):
        serial = _run_layer(case, sparse, weights, tiles, parallel=False)
        threads = _run_layer(case, sparse, weights, tiles, parallel=True)
        for a, b, c, w in zip(serial, threads, one, want, strict=True):
            np.testing.assert_array_equal(a, b)  # which thread ran a tile changes nothing
            np.testing.assert_allclose(a, c, rtol=0, atol=1e-4)  # another sum order: round-off
            np.testing.assert_allclose(a, w, rtol=0, atol=1e-4)
        if sparse:  # rows with no input were neither updated nor summed
            unused = np.setdiff1d(np.arange(H0.shape[0]), case[7])
            np.testing.assert_array_equal(serial[0][unused], H0[unused])


def test_backward_splits_a_layer_only_when_its_product_is_large_enough():
    from ebprop.kernels import fused as engine  # the engine's plan (private on purpose)

    # Δ_l = Δ_{l+1}M_{l+1}ᵀ: 800 units through an 800 × 800 layer split over two threads; through
    # the 800 × 10 output layer (8,000 weights), or 200 × 10, they do not: the work is a few µs.
    assert engine._backward_tiles([800, 800, 10], 2) == [2, 1, 1]
    assert engine._backward_tiles([200, 10], 2) == [1, 1]
    assert engine._backward_tiles([800, 800, 10], 1) == [1, 1, 1]
    assert engine._backward_tiles([100, 400, 3], 2) == [1, 1, 1]  # 100 units: under 2 × 64


_BLAS_THREADS = """
import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits
from ebprop.core import init_network, make_family
from ebprop.kernels import run_minibatches_fused

def blas_threads():
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

net = init_network((40, 30, 3), make_family("binary"), np.random.default_rng(0), dtype=np.float32)
rng = np.random.default_rng(1)
X = rng.random((40, 40), dtype=np.float32)
Y = -np.ones((40, 3), np.float32)
Y[np.arange(40), rng.integers(0, 3, 40)] = 1
seen = []
with threadpool_limits(limits=2, user_api="blas"):
    before = blas_threads()
    assert before == {2}, before
    for _ in range(2):  # the second call reuses the cached view of the thread pools
        run_minibatches_fused(
            net, X, Y, np.arange(40), 10, on_batch=lambda p, e: seen.append(blas_threads())
        )
        assert blas_threads() == before
assert len(seen) == 8 and all(s == {1} for s in seen), seen
"""


def test_blas_is_held_to_one_thread_inside_the_loop_and_restored_after_it():
    # In a process of its own: this suite starts BLAS with one thread (conftest.py), and a
    # thread pool cannot grow past the size it started with.
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}  # fmt: skip
    env["OPENBLAS_NUM_THREADS"] = "2"
    subprocess.run([sys.executable, "-c", _BLAS_THREADS], env=env, check=True)


@pytest.mark.parametrize("fused", [True, False])
def test_callback_every_k_minibatches_changes_nothing_but_when_it_is_called(fused):
    run = run_minibatches_fused if fused else run_minibatches_inplace
    every_one, every_three, stopped = _pair("binary", np.float32) + _pair("binary", np.float32)[:1]
    X, Y = _data(97, np.float32, sparse=True)  # 10 minibatches of 10, the last one of 7
    order = np.random.default_rng(4).permutation(97)
    ones, threes = [], []
    run(every_one, X, Y, order, 10, on_batch=lambda p, e: ones.append(p))
    run(every_three, X, Y, order, 10, on_batch=lambda p, e: threes.append(p), callback_every=3)
    assert ones == [10, 20, 30, 40, 50, 60, 70, 80, 90, 97]
    assert threes == [30, 60, 90, 97]  # and after the last minibatch
    _same(every_three, every_one)
    # stopping at a call and resuming from there is the same run
    position, _ = run(stopped, X, Y, order, 10, on_batch=lambda p, e: p >= 50, callback_every=3)
    assert position == 60
    run(stopped, X, Y, order, 10, start=position, callback_every=3)
    _same(stopped, every_one)
    with pytest.raises(ValueError, match="callback_every must be ≥ 1"):
        run(stopped, X, Y, order, 10, on_batch=lambda p, e: False, callback_every=0)


def test_empty_range_trains_nothing():
    net, _ = _pair("binary", np.float64)
    before = [h.copy() for h in net.H]
    X, Y = _data(10, np.float64, sparse=False)
    assert run_minibatches_fused(net, X, Y, np.arange(10), 5, start=10) == (10, 0)
    for a, b in zip(before, net.H, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("batch", "jobs", "message"),
    [(0, 1, "batch_size must be"), (5, 0, "n_jobs must be"), (5, "two", "n_jobs must be")],
)
def test_bad_batch_or_jobs_is_an_error(batch, jobs, message):
    net, _ = _pair("binary", np.float64)
    X, Y = _data(10, np.float64, sparse=False)
    with pytest.raises(ValueError, match=message):
        run_minibatches_fused(net, X, Y, np.arange(10), batch, n_jobs=jobs)


def test_unsupported_network_is_an_error():
    net, _ = _pair("binary", np.float64)
    net.H[0] = np.asfortranarray(net.H[0])
    X, Y = _data(10, np.float64, sparse=False)
    with pytest.raises(ValueError, match="fused kernels support"):
        run_minibatches_fused(net, X, Y, np.arange(10), 5)


_WIRED = "n_jobs" in inspect.signature(_train_loop).parameters


@pytest.mark.skipif(not _WIRED, reason="train.py does not pick the fused kernels yet")
def test_train_loop_picks_the_kernels_and_falls_back_without_numba(monkeypatch):
    import ebprop.kernels

    nets = [*_pair("binary", np.float64), *_pair("binary", np.float64)]
    X, Y = _data(50, np.float64, sparse=True)
    order = np.arange(50)
    _train_loop(nets[0], X, Y, order, 5, n_jobs=1)  # the fused kernels, one thread
    run_minibatches_fused(nets[1], X, Y, order, 5)
    _same(nets[0], nets[1])
    _train_loop(nets[2], X, Y, order, 5, n_jobs=0)  # the NumPy reference
    monkeypatch.setattr(ebprop.kernels, "unavailable_reason", lambda: "numba is not installed")
    _train_loop(nets[3], X, Y, order, 5, n_jobs=1)  # numba missing: the NumPy reference too
    _same(nets[2], nets[3])
    assert np.abs(nets[0].H[0] - nets[2].H[0]).max() > 0  # two different code paths ran


@pytest.mark.skipif(not _WIRED, reason="train.py does not pick the fused kernels yet")
def test_n_jobs_must_be_a_non_negative_integer():
    from ebprop.estimator import EBPClassifier
    from ebprop.runs import TrainOptions

    X, Y = _data(20, np.float64, sparse=False)
    with pytest.raises(ValueError, match="n_jobs must be an integer >= 0 or 'auto' or None"):
        EBPClassifier(n_jobs=-1).fit(X, Y.argmax(axis=1))
    with pytest.raises(ValueError, match="n_jobs must be an integer >= 0 or 'auto' or None"):
        EBPClassifier(n_jobs="all").fit(X, Y.argmax(axis=1))
    with pytest.raises(ValueError, match="jobs must be an integer >= 0 or 'auto' or None"):
        TrainOptions(jobs=-2)
    EBPClassifier(hidden_layer_sizes=(8,), max_iter=1, n_jobs=0).fit(X, Y.argmax(axis=1))


@pytest.mark.skipif(not _WIRED, reason="train.py does not pick the fused kernels yet")
def test_default_picks_the_kernels_only_for_large_epochs(monkeypatch):
    import ebprop.trainer
    from ebprop.trainer import uses_fused_loop

    net = _pair("binary", np.float32)[0]
    n_weights = sum(h.size for h in net.H)
    small = int(ebprop.trainer.FUSED_MIN_WORK // n_weights) - 1
    assert not uses_fused_loop(net, small, None)  # compile time would not pay off
    assert uses_fused_loop(net, small + 2, None)
    assert uses_fused_loop(net, 10, 1) and not uses_fused_loop(net, 10**9, 0)
    monkeypatch.setattr(ebprop.kernels, "unavailable_reason", lambda: "numba is not installed")
    assert not uses_fused_loop(net, 10**9, None) and not uses_fused_loop(net, 10, 2)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_minibatch_buffers_start_on_cache_lines_and_at_zero(n_jobs):
    from ebprop.core.network import ALIGNMENT
    from ebprop.kernels import fused as engine  # the engine's buffers (private on purpose)

    net = init_network((784, 800, 800, 10), make_family("binary"), np.random.default_rng(0))
    e = engine._Engine(net, 10, 0.0, n_jobs)
    x, w0, Z, V, WN = e.slots[0], e.slots[1], e.slots[6], e.slots[8], e.slots[9]
    delta, mu, var, S, parts = e.bufs[0], e.bufs[1], e.bufs[2], e.bufs[3], e.bufs[4]
    arrays = [*x, *w0, *Z, *V, *WN, *delta, *mu, *var, S[0], *(p for p in parts if p.size)]
    # two slots of x and w0, two slots × three layers of Z, V, WN; Δ, μ, σ² per layer; the first
    # layer's sparse-update scratch; the second thread's sums of the two 800-unit layers
    assert len(arrays) == 2 * 2 + 3 * 2 * 3 + 3 * 3 + 1 + (2 if n_jobs == 2 else 0)
    for a in arrays:  # Δ's rows are loaded as whole vectors (800 floats: every row on a line)
        assert a.ctypes.data % ALIGNMENT == 0
        assert a.dtype == net.dtype and a.flags.c_contiguous and not a.any()


def test_conv_layer_statistics_agree_with_the_numpy_core():
    from ebprop.core.forward import layer_forward
    from ebprop.kernels import conv_layer_forward

    rng = np.random.default_rng(11)
    m = rng.uniform(-1, 1, size=(40, 25)).astype(np.float32)
    M = np.tanh(rng.normal(0, 2, size=(25, 6))).astype(np.float32)
    b = rng.normal(0, 3, size=6).astype(np.float32)
    var = (25.0 - (m * m) @ (M * M)).astype(np.float32)
    var[0, 0] = -1e-6  # round-off below 0: clamped before the +1, as in the core
    want = layer_forward(m, M, M * M, b, var.copy())
    got = conv_layer_forward(m, M, M * M, b, var.copy())
    np.testing.assert_allclose(got.scale, want.scale, rtol=2e-7)
    np.testing.assert_allclose(got.z, want.z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.v, want.v, rtol=1e-5, atol=1e-6)
    assert got.fan_in == want.fan_in == 26
    # float64 and layers without intercept are the core's own result
    m64, M64 = m.astype(np.float64), M.astype(np.float64)
    v64 = var.astype(np.float64)
    for intercept in (True, False):
        a = conv_layer_forward(m64, M64, M64**2, b.astype(np.float64), v64.copy(), intercept)
        c = layer_forward(m64, M64, M64**2, b.astype(np.float64), v64.copy(), intercept)
        assert np.array_equal(a.v, c.v) and np.array_equal(a.z, c.z)


def test_conv_training_uses_compiled_statistics_and_follows_the_numpy_core():
    from ebprop.core import BinaryWeights, init_conv_network
    from ebprop.core.architecture import DenseSpec, parse_architecture
    from ebprop.kernels import conv_layer_forward
    from ebprop.trainer import conv_layer_stats, describe_engine

    specs = parse_architecture("4C3-MP2-8") + (DenseSpec(3),)
    nets = [
        init_conv_network(specs, (8, 8, 1), BinaryWeights(), np.random.default_rng(2), 10.0)
        for _ in range(2)
    ]
    assert conv_layer_stats(nets[0], None) is conv_layer_forward
    assert "compiled unit statistics" in describe_engine(nets[0], 100, None)
    assert conv_layer_stats(nets[0], 0) is not conv_layer_forward  # n_jobs=0: the NumPy core
    assert "compiled" not in describe_engine(nets[0], 100, 0)
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, size=(60, 64)).astype(np.float32)
    Y = encode_targets(rng.integers(0, 3, 60), 3, np.float32)
    order = np.arange(60)
    for net, jobs in zip(nets, (None, 0), strict=True):
        _train_loop(net, X, Y, order, 10, n_jobs=jobs)
    for a, b in zip(nets[0].H + nets[0].b, nets[1].H + nets[1].b, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    assert not all(np.array_equal(a, b) for a, b in zip(nets[0].H, nets[1].H, strict=True))
