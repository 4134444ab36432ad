"""Row-major GEMM callable from compiled (numba) code, on strided views, with C ← A·op(B) + βC.

NumPy's own OpenBLAS (CBLAS, 64-bit integers) is used when its library can be found next to
NumPy: measured 2× faster than SciPy's OpenBLAS 0.3.30 on the (10 × 800)·(800 × 800) product of
this project (0.59 vs 1.25 ms, one thread). Otherwise SciPy's Fortran BLAS through
``scipy.linalg.cython_blas``. Either way the BLAS library is one that threadpoolctl limits.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numba as nb
import numpy as np
from numba.extending import get_cython_function_address

__all__ = ["BACKEND", "gemm"]

_vp, _i64, _ci = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int


def _numpy_cblas() -> tuple[object, object] | None:
    """NumPy's OpenBLAS ``cblas_sgemm``/``cblas_dgemm`` (scipy-openblas64 wheels), or None."""
    libdir = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libdir, "libscipy_openblas64_*.so"))):
        try:
            lib = ctypes.CDLL(path)
            s, d = lib.scipy_cblas_sgemm64_, lib.scipy_cblas_dgemm64_
        except (OSError, AttributeError):
            continue
        for fn, real in ((s, ctypes.c_float), (d, ctypes.c_double)):
            fn.restype = None
            fn.argtypes = [_ci, _ci, _ci, _i64, _i64, _i64, real, _vp, _i64, _vp, _i64, real]
            fn.argtypes += [_vp, _i64]
        return s, d
    return None


_CBLAS = _numpy_cblas()

if _CBLAS is not None:
    BACKEND = "numpy-openblas-cblas"
    _cblas_s, _cblas_d = _CBLAS

    @nb.njit(nogil=True)
    def gemm(a, b, c, beta, trans_b):  # pragma: no cover - compiled
        """c ← a @ (bᵀ if trans_b else b) + beta·c; 2-D views with unit inner stride."""
        m, n, k = c.shape[0], c.shape[1], a.shape[1]
        if m == 0 or n == 0:
            return
        isz = a.itemsize
        lda, ldb, ldc = a.strides[0] // isz, b.strides[0] // isz, c.strides[0] // isz
        tb = 112 if trans_b else 111  # CblasTrans, CblasNoTrans
        if isz == 4:
            _cblas_s(101, 111, tb, m, n, k, 1.0, a.ctypes, lda, b.ctypes, ldb, beta, c.ctypes, ldc)
        else:
            _cblas_d(101, 111, tb, m, n, k, 1.0, a.ctypes, lda, b.ctypes, ldb, beta, c.ctypes, ldc)

else:  # pragma: no cover - depends on how NumPy was built
    BACKEND = "scipy-cython-blas"
    _ftype = ctypes.CFUNCTYPE(None, *([_vp] * 13))
    _fs = _ftype(get_cython_function_address("scipy.linalg.cython_blas", "sgemm"))
    _fd = _ftype(get_cython_function_address("scipy.linalg.cython_blas", "dgemm"))

    @nb.njit(nogil=True)
    def gemm(a, b, c, beta, trans_b):
        """c ← a @ (bᵀ if trans_b else b) + beta·c; 2-D views with unit inner stride."""
        m, n, k = c.shape[0], c.shape[1], a.shape[1]
        if m == 0 or n == 0:
            return
        isz = a.itemsize
        # Column-major BLAS on row-major data: cᵀ = op(b)ᵀ aᵀ.
        ints = np.empty(6, np.int32)
        ints[0], ints[1], ints[2] = n, m, k
        ints[3], ints[4], ints[5] = b.strides[0] // isz, a.strides[0] // isz, c.strides[0] // isz
        chars = np.empty(2, np.uint8)
        chars[0] = 84 if trans_b else 78  # 'T' / 'N'
        chars[1] = 78
        if isz == 4:
            s = np.empty(2, np.float32)
            s[0], s[1] = 1.0, beta
            _fs(chars.ctypes, chars[1:].ctypes, ints.ctypes, ints[1:].ctypes, ints[2:].ctypes,
                s.ctypes, b.ctypes, ints[3:].ctypes, a.ctypes, ints[4:].ctypes, s[1:].ctypes,
                c.ctypes, ints[5:].ctypes)  # fmt: skip
        else:
            d = np.empty(2, np.float64)
            d[0], d[1] = 1.0, beta
            _fd(chars.ctypes, chars[1:].ctypes, ints.ctypes, ints[1:].ctypes, ints[2:].ctypes,
                d.ctypes, b.ctypes, ints[3:].ctypes, a.ctypes, ints[4:].ctypes, d[1:].ctypes,
                c.ctypes, ints[5:].ctypes)  # fmt: skip
