"""Row-major GEMM callable from compiled (numba) code, on strided views, with C ← A·op(B) + βC.

NumPy's own OpenBLAS (CBLAS, 64-bit integers) is used when its library can be found next to
NumPy: measured 2× faster than SciPy's OpenBLAS 0.3.30 on the (10 × 800)·(800 × 800) product of
this project (0.59 vs 1.25 ms, one thread), and limited by threadpoolctl like NumPy itself. When
it cannot be found (a NumPy not built on scipy-openblas64), :data:`GEMM_ADDRESSES` is None and
the fused loop is not used (the NumPy core runs instead).

The function's address is an argument of the compiled code, not a constant in it, so numba can
cache the kernels on disk (``cache=True``): the address changes from process to process.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba.extending import intrinsic

from .system import enter_kernel_cache, find_numpy_cblas, leave_kernel_cache

enter_kernel_cache()  # numba fixes each function's cache folder when it is decorated

__all__ = ["BACKEND", "GEMM_ADDRESSES", "gemm"]


_FOUND = find_numpy_cblas()
_CBLAS = _FOUND[1:] if _FOUND is not None else None
BACKEND = "numpy-openblas-cblas" if _CBLAS is not None else None
#: (cblas_sgemm, cblas_dgemm) addresses, passed to the compiled code at every call; or None.
GEMM_ADDRESSES = np.array(_CBLAS, dtype=np.int64) if _CBLAS is not None else None


@intrinsic
def _cblas_call(typingctx, addr, flags, dims, alpha, a, b, beta, c):  # pragma: no cover
    """Call ``cblas_?gemm(RowMajor, ta, tb, m, n, k, α, a, lda, b, ldb, β, c, ldc)`` at
    ``addr``; flags = (ta, tb), dims = (m, n, k, lda, ldb, ldc), a/b/c raw addresses (int64)."""
    real = alpha

    def codegen(context, builder, signature, args):
        addr_v, flags_v, dims_v, alpha_v, a_v, b_v, beta_v, c_v = args
        lt = context.get_value_type(real)
        i32, i64, ptr = ir.IntType(32), ir.IntType(64), ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(
            ir.VoidType(), [i32, i32, i32, i64, i64, i64, lt, ptr, i64, ptr, i64, lt, ptr, i64]
        )
        fn = builder.inttoptr(addr_v, fnty.as_pointer())
        dims = [builder.extract_value(dims_v, i) for i in range(6)]
        ta = builder.trunc(builder.extract_value(flags_v, 0), i32)
        tb = builder.trunc(builder.extract_value(flags_v, 1), i32)
        builder.call(
            fn,
            [
                ir.Constant(i32, 101), ta, tb, dims[0], dims[1], dims[2],
                alpha_v, builder.inttoptr(a_v, ptr), dims[3], builder.inttoptr(b_v, ptr), dims[4],
                beta_v, builder.inttoptr(c_v, ptr), dims[5],
            ],
        )  # fmt: skip
        return context.get_dummy_value()

    sig = nb.types.void(addr, flags, dims, alpha, a, b, beta, c)
    return sig, codegen


@nb.njit(nogil=True, cache=True)
def gemm(a, b, c, beta, trans_a, trans_b, addresses):  # pragma: no cover - compiled
    """c ← op(a) @ op(b) + beta·c, op(x) = xᵀ if its flag is set; 2-D views with unit inner
    stride.

    ``trans_a`` lets the update take its inputs ⟨v⟩ (B, n_in) as they are, ⟨v⟩ᵀ½Δ, with no
    transposed copy: OpenBLAS gave the same bits as on the copy, 2–13 % faster on the update's
    row blocks alone (784 × 200, 800 × 800, 784 × 500, float32, three runs; docs/performance.md,
    decision 4). ``addresses`` is :data:`GEMM_ADDRESSES` (single, double precision).
    """
    m, n = c.shape[0], c.shape[1]
    k = a.shape[0] if trans_a else a.shape[1]
    if m == 0 or n == 0:
        return
    isz = a.itemsize
    dims = (np.int64(m), np.int64(n), np.int64(k),
            np.int64(a.strides[0] // isz), np.int64(b.strides[0] // isz),
            np.int64(c.strides[0] // isz))  # fmt: skip
    # CblasTrans 112 / CblasNoTrans 111
    flags = (np.int64(112 if trans_a else 111), np.int64(112 if trans_b else 111))
    one = c.dtype.type(1.0)
    addr = addresses[0] if isz == 4 else addresses[1]
    _cblas_call(addr, flags, dims, one, a.ctypes.data, b.ctypes.data, c.dtype.type(beta),
                c.ctypes.data)  # fmt: skip


leave_kernel_cache()
