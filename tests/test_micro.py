"""The register-blocked forward sums and backward product (ebprop.kernels._micro) against NumPy
products (issue 13)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba")
from ebprop.core.update import PARAMETER_BOUND  # noqa: E402
from ebprop.kernels._micro import accumulate, accumulate_pair, dot_rows  # noqa: E402
from ebprop.kernels._update import update_clip  # noqa: E402

SHAPES = [  # (B, n rows of M, m columns, k0, k1): full strips, partial strips, both, leftovers
    (10, 50, 37, 0, 37),
    (10, 40, 64, 0, 64),
    (7, 30, 70, 3, 61),
    (1, 5, 3, 0, 3),
    (12, 40, 100, 16, 100),
    (4, 9, 20, 5, 6),
]


def _case(dtype, B, n, m, seed=0):
    rng = np.random.default_rng(seed)
    C = rng.standard_normal((B, n + 3)).astype(dtype)  # wider than needed: only i0:i1 is read
    M = rng.standard_normal((n, m)).astype(dtype)
    out = rng.standard_normal((B, m)).astype(dtype)
    rows = rng.permutation(n).astype(np.int64)
    return C, M, out, rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("square", [False, True])
def test_accumulate_equals_a_numpy_product(dtype, shape, sparse, square):
    B, n, m, k0, k1 = shape
    C, M, out, rows = _case(dtype, B, n, m)
    i0, i1 = 1, n - 1
    expected = out.astype(np.float64)
    picked = M[rows[i0:i1]] if sparse else M[i0:i1]
    picked = picked.astype(np.float64) ** (2 if square else 1)
    expected[:, k0:k1] += C[:, i0:i1].astype(np.float64) @ picked[:, k0:k1]
    before = out.copy()
    accumulate(C, M, rows, sparse, i0, i1, k0, k1, square, out)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, expected, rtol=0, atol=tol * n)
    # columns outside k0:k1 are neither read into nor written (the masked strip ends included)
    np.testing.assert_array_equal(out[:, :k0], before[:, :k0])
    np.testing.assert_array_equal(out[:, k1:], before[:, k1:])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_accumulate_does_not_depend_on_how_the_columns_are_split(dtype):
    # Each element is summed over the rows in order whatever strip or tile holds it, so splitting
    # the columns (the backward pass's short-row path gives each thread its own columns) gives
    # the same bits.
    C, M, out, rows = _case(dtype, 10, 60, 101, seed=3)
    whole, split = out.copy(), out.copy()
    accumulate(C, M, rows, False, 0, 60, 0, 101, True, whole)
    for k0, k1 in [(0, 5), (5, 38), (38, 101)]:
        accumulate(C, M, rows, False, 0, 60, k0, k1, True, split)
    np.testing.assert_array_equal(split, whole)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES + [(10, 33, 96, 0, 96), (15, 20, 800, 0, 800)])
@pytest.mark.parametrize("sparse", [False, True])
def test_accumulate_pair_gives_the_bits_of_two_accumulates(dtype, shape, sparse):
    # the μ- and σ²-sums in one read of M: every element the same multiply-adds in the same order
    B, n, m, k0, k1 = shape
    F, M, mu, rows = _case(dtype, B, n, m, seed=5)
    W, _, var, _ = _case(dtype, B, n, m, seed=6)
    i0, i1 = 1, n - 1
    mu_ref, var_ref = mu.copy(), var.copy()
    accumulate(F, M, rows, sparse, i0, i1, k0, k1, False, mu_ref)
    accumulate(W, M, rows, sparse, i0, i1, k0, k1, True, var_ref)
    accumulate_pair(F, W, M, rows, sparse, i0, i1, k0, k1, mu, var)
    np.testing.assert_array_equal(mu, mu_ref)
    np.testing.assert_array_equal(var, var_ref)


def test_accumulate_sums_the_rows_in_order_from_the_output():
    # out + c0·m0 + c1·m1 + …, one multiply-add at a time: a transcription in float64 with
    # math.fma would agree exactly; here the rows are chosen so that order matters in float32.
    C = np.ones((5, 3), np.float32)
    M = np.array([[1e8], [1.0], [-1e8]], np.float32)
    out = np.zeros((5, 1), np.float32)
    accumulate(C, M, np.arange(3), False, 0, 3, 0, 1, False, out)
    np.testing.assert_array_equal(out, 0.0)  # (1e8 + 1) rounds to 1e8 in float32, then − 1e8


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B, n, rows, i0, i1", [(10, 800, 40, 0, 40), (7, 10, 13, 1, 12),
                                                (1, 3, 5, 0, 5), (12, 37, 9, 2, 9)])  # fmt: skip
def test_dot_rows_equals_a_numpy_product(dtype, B, n, rows, i0, i1):
    rng = np.random.default_rng(5)
    U = rng.standard_normal((B, n)).astype(dtype)
    M = rng.standard_normal((rows, n)).astype(dtype)
    out = np.full((B, rows + 2), 5.0, dtype)
    dot_rows(U, M, i0, i1, out)
    expected = U.astype(np.float64) @ M[i0:i1].astype(np.float64).T
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out[:, i0:i1], expected, rtol=0, atol=tol * n)
    untouched = np.ones(rows + 2, bool)
    untouched[i0:i1] = False
    assert np.all(out[:, untouched] == 5.0)


@pytest.mark.parametrize("n", [203, 10])  # 10: short rows, the transposed path
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dot_rows_does_not_depend_on_the_row_split_or_the_sample_group(dtype, n):
    # Threads take row tiles, and leftover rows and samples go through another kernel: every
    # element must still be the same sum, bit for bit.
    rng = np.random.default_rng(6)
    U = rng.standard_normal((10, n)).astype(dtype)
    M = rng.standard_normal((31, n)).astype(dtype)
    whole, split = np.zeros((10, 31), dtype), np.zeros((10, 31), dtype)
    dot_rows(U, M, 0, 31, whole)
    for i0, i1 in [(0, 3), (3, 4), (4, 17), (17, 31)]:
        dot_rows(U, M, i0, i1, split)
    np.testing.assert_array_equal(split, whole)
    alone = np.zeros((3, 31), dtype)  # samples 7–9 alone: the leftover (one-sample) kernel
    dot_rows(np.ascontiguousarray(U[7:]), M, 0, 31, alone)
    np.testing.assert_array_equal(alone, whole[7:])


def _lane_sums_both_ways():
    import numba as nb

    from ebprop.kernels import _micro, _simd  # private on purpose: the kernels themselves

    @nb.njit
    def both(a, tree, one_by_one):  # pragma: no cover - compiled
        L = _simd.lanes(a)
        z = _simd.vzero(a)
        v0, v1, v2, v3 = (
            _simd.vload(a, 0),
            _simd.vload(a, L),
            _simd.vload(a, 2 * L),
            _simd.vload(a, 3 * L),
        )
        v4, v5, v6 = _simd.vload(a, 4 * L), _simd.vload(a, 5 * L), _simd.vload(a, 6 * L)
        v7, v8, v9 = _simd.vload(a, 7 * L), _simd.vload(a, 8 * L), _simd.vload(a, 9 * L)
        t0, t1, t2 = _micro._sums10(L, z, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9)
        for k in range(10):
            t = t0 if k < L else (t1 if k < 2 * L else t2)
            tree[k] = _simd.vlane(t, k % L)
        one_by_one[0], one_by_one[1], one_by_one[2] = _simd.vsum(v0), _simd.vsum(v1), _simd.vsum(v2)
        one_by_one[3], one_by_one[4], one_by_one[5] = _simd.vsum(v3), _simd.vsum(v4), _simd.vsum(v5)
        one_by_one[6], one_by_one[7] = _simd.vsum(v6), _simd.vsum(v7)
        one_by_one[8], one_by_one[9] = _simd.vsum(v8), _simd.vsum(v9)
        return L

    return both


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lane_sums_of_ten_vectors_give_the_bits_of_vsum(dtype):
    # the backward product sums its ten accumulators' lanes level by level across vectors; each
    # must be vsum's pairwise sum bit for bit, on values where the grouping changes the result
    rng = np.random.default_rng(8)
    lanes = 64 // np.dtype(dtype).itemsize  # enough for either width
    a = (rng.standard_normal(10 * lanes) * 10.0 ** rng.integers(-9, 10, 10 * lanes)).astype(dtype)
    tree, one_by_one = np.zeros(10, dtype), np.zeros(10, dtype)
    L = _lane_sums_both_ways()(a, tree, one_by_one)
    np.testing.assert_array_equal(
        tree.view(f"u{tree.itemsize}"), one_by_one.view(f"u{tree.itemsize}")
    )
    in_order = np.array([np.add.accumulate(a[k * L : (k + 1) * L])[-1] for k in range(10)])
    assert np.any(in_order != tree)  # a left-to-right sum differs: the test can tell orders apart


UPDATE_SHAPES = [  # (B, n_in, n_out, i0, i1): whole 6-row tiles and leftovers, full strips,
    # a partial last strip, a strip narrower than one vector, a row range inside the layer
    (10, 50, 37, 0, 50),
    (10, 24, 64, 0, 24),
    (7, 31, 70, 5, 30),
    (1, 5, 3, 0, 5),
    (12, 40, 100, 13, 14),
]


def _update_case(dtype, B, n_in, n_out, sparse, seed=3):
    rng = np.random.default_rng(seed)
    H = rng.standard_normal((n_in, n_out)).astype(dtype)
    H[0, :2] = PARAMETER_BOUND, -PARAMETER_BOUND  # pushed beyond the bound below: clipped
    D = rng.standard_normal((B, n_out)).astype(dtype)
    D[:, :2] = 1.0, -1.0
    rows = np.sort(rng.permutation(n_in)[: n_in - n_in // 3]) if sparse else np.arange(n_in)
    rows[0] = 0
    U = rng.standard_normal((B, n_in + 2)).astype(dtype)  # wider than needed
    U[:, 0] = 1.0
    return H, D, rows.astype(np.int64), U


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", UPDATE_SHAPES)
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("rho", [1.0, 0.75])
def test_update_clip_equals_the_core_update(dtype, shape, sparse, rho):
    B, n_in, n_out, i0, i1 = shape
    H, D, rows, U = _update_case(dtype, B, n_in, n_out, sparse)
    i1 = min(i1, len(rows))
    H0 = H.copy()
    update_clip(U, D, H, rows, sparse, i0, i1, rho)
    # H[row] ← clip(ρH + Σ_s U[s, i] D[s]), in float64; U's column i feeds row rows[i] (sparse)
    want = H0.astype(np.float64)
    sel = rows[i0:i1] if sparse else np.arange(i0, i1)
    inc = U[:, i0:i1].T.astype(np.float64) @ D.astype(np.float64)
    want[sel] = np.clip(rho * want[sel] + inc, -PARAMETER_BOUND, PARAMETER_BOUND)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(H, want, rtol=tol, atol=tol)
    untouched = np.setdiff1d(np.arange(n_in), sel)
    np.testing.assert_array_equal(H[untouched], H0[untouched])  # bit for bit
    if i0 == 0 and rho == 1.0:  # the clip: exactly the bound where the update went beyond it
        assert H[0, 0] == PARAMETER_BOUND and H[0, 1] == -PARAMETER_BOUND


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sparse", [False, True])
def test_update_clip_gives_each_row_the_same_bits_however_the_rows_are_split(dtype, sparse):
    # Threads and row blocks split the rows anywhere: a row updated in a 6-row tile and the same
    # row updated alone get the same multiply-adds in the same order.
    H, D, rows, U = _update_case(dtype, 10, 40, 45, sparse)
    n = len(rows)
    whole, pieces = H.copy(), H.copy()
    update_clip(U, D, whole, rows, sparse, 0, n, 1.0)
    for a, b in [(0, 1), (1, 8), (8, 9), (9, 22), (22, n)]:
        update_clip(U, D, pieces, rows, sparse, a, b, 1.0)
    np.testing.assert_array_equal(whole, pieces)


@pytest.mark.parametrize(("features", "width", "pair"), [
    ("+avx,+avx2,+fma,+avx512f,+avx512bw,+avx512dq,+avx512vl", 64, True),
    ("+avx,+avx2,+fma,-avx512f,-avx512bw,-avx512dq,-avx512vl", 32, False),
])  # fmt: skip
def test_vector_width_follows_the_cpu_numba_compiles_for(features, width, pair):
    # 64-byte vectors (and the paired forward sums, which need 32 registers, and the tiled
    # update of real weights, measured faster only there) only where the target has AVX-512F;
    # numba's NUMBA_CPU_FEATURES sets the target, as it keys numba's cache.
    code = (
        "from ebprop.kernels._simd import VECTOR_BYTES;"
        "from ebprop.kernels._micro import PAIR_IN_REGISTERS;"
        "from ebprop.kernels._update import UPDATE_IN_TILES;"
        "print(VECTOR_BYTES, PAIR_IN_REGISTERS, UPDATE_IN_TILES)"
    )
    env = {**os.environ, "NUMBA_CPU_FEATURES": features}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [str(width), str(pair), str(pair)]
