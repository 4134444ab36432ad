"""tanh and erf for compiled loops that LLVM can vectorise (no libm call per element).

Without Intel SVML (not installed here) ``math.tanh`` in a numba loop is one scalar libm call per
element; measured ~45 ns/element on this machine (docs/performance.md), more than the whole rest
of the update. These versions use only arithmetic, comparisons and a float ↔ integer bit cast, so
a loop over them becomes AVX2 code.

float32 (the default dtype), one rational function each:

    tanh x = x · P(x²) / Q(x²),  |x| ≤ 9 (beyond, tanh rounds to ±1),  P of degree 6, Q of 3
    erf x  = x · P(x²) / Q(x²),  |x| ≤ 3.92 (beyond, erf rounds to ±1), P of degree 6, Q of 4

erf: float32 only (float64 keeps ``math.erf``). ``math.erf`` is a scalar libm call, 7 % of a
784-200-10 minibatch (docs/performance.md, decision 6): one per unit and sample in every layer's
forward pass.

float64 (a rational of that accuracy would need many more terms):

    tanh|x| = (1 − e)/(1 + e), e = exp(−2|x|)      for |x| ≥ threshold (no cancellation there)
    tanh x  = x − x³/3 + 2x⁵/15 − …                 (Taylor, Bernoulli numbers) below it

    exp(y) = 2ⁿ · exp(r),  n = round(y/ln 2),  r = y − n ln 2 (two-part ln 2, |r| ≤ ln2/2),
    exp(r) by its Taylor polynomial; 2ⁿ built from its exponent bits.

Accuracy (tests/test_kernels.py; exhaustively over float32 by ``benchmarks/fit_rational32.py
tanh --check`` and ``erf --check``): tanh within 6 ulp of the exact value in float32 (5.94 at
worst), 4 ulp in float64; erf within 8 ulp in float32 (7.54 at worst). Both are far below the
round-off that separates the kernels from the NumPy core after a few minibatches.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from llvmlite import ir
from numba.extending import intrinsic, overload

from ._simd import vabs, vdiv, vfma, vmax, vmin, vmul, vsign_of, vsplat
from .system import enter_kernel_cache, leave_kernel_cache

enter_kernel_cache()  # numba fixes each function's cache folder when it is decorated

__all__ = ["erf", "erf32", "exp_neg", "tanh", "tanh32", "tanh64", "vclip", "vtanh32"]


def _bitcast(source, target, llvm_type):
    """An intrinsic reinterpreting the bits of a ``source`` scalar as a ``target`` scalar."""

    @intrinsic
    def cast(typingctx, x):  # pragma: no cover - compiled
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], llvm_type)

        return target(source), codegen

    return cast


_f32_from_bits = _bitcast(nb.types.int32, nb.types.float32, ir.FloatType())
_bits_of_f32 = _bitcast(nb.types.float32, nb.types.int32, ir.IntType(32))
_f64_from_bits = _bitcast(nb.types.int64, nb.types.float64, ir.DoubleType())
_bits_of_f64 = _bitcast(nb.types.float64, nb.types.int64, ir.IntType(64))


# Taylor coefficients of tanh x / x in powers of x² (2^{2n}(2^{2n}−1) B_{2n}/(2n)!).
_TANH_TAYLOR = (
    1.0,
    -0.3333333333333333,
    0.13333333333333333,
    -0.05396825396825397,
    0.021869488536155203,
    -0.008863235529902197,
    0.003592128036572481,
    -0.0014558343870513183,
    0.000590027440945586,
    -0.00023912911424355248,
    9.691537956929451e-05,
    -3.927832388331683e-05,
    1.5918905069328964e-05,
)

# ---------------------------------------------------------------- float32
_F = np.float32
_MAGIC32 = _F(12582912.0)  # 1.5·2²³: adding it rounds to an integer held in the low bits
_MAGIC32_BITS = np.int32(np.array(12582912.0, np.float32).view(np.int32))
_LOG2E32 = _F(1.4426950408889634)
_LN2_HI32 = _F(0.693145751953125)  # exact in 16 bits: n·LN2_HI is exact
_LN2_LO32 = _F(1.4286067653301870e-06)
_ONE32 = _F(1.0)
_CLAMP32 = _F(9.0)  # tanh(9) = 1 − 3·10⁻⁸ rounds to 1 in float32
_E32 = tuple(_F(1.0 / f) for f in (1, 1, 2, 6, 24, 120, 720, 5040))  # exp Taylor, degree 7


@nb.njit(inline="always", fastmath={"contract"}, error_model="numpy", cache=True)
def _exp_neg32(y):  # pragma: no cover - compiled
    # exp(y) for −18 ≤ y ≤ 0.
    k = y * _LOG2E32 + _MAGIC32
    kf = k - _MAGIC32
    r = y - kf * _LN2_HI32
    r = r - kf * _LN2_LO32
    p = _E32[7]
    p = p * r + _E32[6]
    p = p * r + _E32[5]
    p = p * r + _E32[4]
    p = p * r + _E32[3]
    p = p * r + _E32[2]
    p = p * r + _E32[1]
    p = p * r + _E32[0]
    n = _bits_of_f32(k) - _MAGIC32_BITS
    return p * _f32_from_bits((n + np.int32(127)) << np.int32(23))


# tanh a ≈ a·P(a²)/Q(a²) on [0, 9]: one division and 9 multiply-adds, against the exp-and-Taylor
# form's ~25 operations and a division (0.22–0.28 ms against 0.62–0.81 ms per 800 × 800 float32
# loop, docs/performance.md, decision 6). Coefficients from benchmarks/fit_rational32.py (float64
# fit to the least max relative error, 0.12 units of 2⁻²⁴); evaluated in float32 the largest
# error over every float32 is 5.94 ulp (same script, --check). Float32 rounding in the two Horner
# chains sets that, not the fit: degrees (4, 4), (5, 4), (6, 4), (7, 3) were 5.2–5.7 ulp on a
# grid too.
_P32 = tuple(_F(c) for c in (
    1.0, 0.13085782527923584, 0.00310589955188334, 1.1173634447914083e-05,
    -2.029772971923194e-08, 5.3097561070192256e-11, -8.56284783205298e-14,
))  # fmt: skip
_Q32 = tuple(_F(c) for c in (1.0, 0.46419110894203186, 0.024503016844391823,
                             0.00025489157997071743))  # fmt: skip


@nb.njit(inline="always", fastmath={"contract"}, error_model="numpy", cache=True)
def tanh32(x):  # pragma: no cover - compiled
    """tanh of a float32, vectorisable (rational; within 6 ulp of the exact value)."""
    a = min(abs(x), _CLAMP32)
    s = a * a
    p = _P32[6]
    for i in range(5, -1, -1):  # Horner; LLVM unrolls both loops
        p = p * s + _P32[i]
    q = _Q32[3]
    for i in range(2, -1, -1):
        q = q * s + _Q32[i]
    t = min(a * p / q, _ONE32)  # |M| ≤ 1 even where rounding would overshoot
    return t if x >= _F(0.0) else -t


@nb.njit(inline="always", fastmath={"contract"}, error_model="numpy", cache=True)
def vclip(x, bound):  # pragma: no cover - compiled
    """min(max(x, −bound), bound) per lane of a vector (:mod:`._simd`): the bits of numba's
    scalar expression (``vmin`` and ``vmax`` mirror its ``min`` and ``max``)."""
    return vmin(vmax(x, vsplat(-bound)), vsplat(bound))


@nb.njit(inline="always", fastmath={"contract"}, error_model="numpy", cache=True)
def vtanh32(x):  # pragma: no cover - compiled
    """:func:`tanh32` of each lane of a float32 vector (:mod:`._simd`): the same operations in
    the same order, so the same bits, in vectors of the CPU's full width (LLVM's vectoriser
    keeps the scalar loop to 256 bits on AVX-512 server cores)."""
    a = vmin(vabs(x), vsplat(_CLAMP32))
    s = vmul(a, a)
    p = vsplat(_P32[6])
    for i in range(5, -1, -1):
        p = vfma(p, s, vsplat(_P32[i]))
    q = vsplat(_Q32[3])
    for i in range(2, -1, -1):
        q = vfma(q, s, vsplat(_Q32[i]))
    t = vmin(vdiv(vmul(a, p), q), vsplat(_ONE32))
    return vsign_of(x, t)


# erf a ≈ a·P(a²)/Q(a²) on [0, 3.92] (``fit_rational32.py erf``: float64 fit within 0.91 units
# of 2⁻²⁴; P(0) = 2/√π). Degrees (6, 4) against (5, 4), (6, 3), (7, 4), (6, 5) on a float32 grid:
# 12.7, 12.8, 6.3, 7.0 ulp; the float32 Horner chains set the rest, as for tanh.
_ERF_P32 = tuple(_F(c) for c in (
    1.128379225730896, 0.19849629700183868, 0.05038249492645264, 0.00363932061009109,
    0.00014024207484908402, -1.9501305814628722e-06, 1.993395670751852e-08,
))  # fmt: skip
_ERF_Q32 = tuple(_F(c) for c in (
    1.0, 0.509244978427887, 0.11440585553646088, 0.014229422435164452, 0.0009405197342857718,
))  # fmt: skip
_ERF_CLAMP32 = _F(3.92)  # erf(3.92) = 1 − 5·10⁻⁹ rounds to 1 in float32


@nb.njit(inline="always", fastmath={"contract"}, error_model="numpy", cache=True)
def erf32(x):  # pragma: no cover - compiled
    """erf of a float32, vectorisable (rational)."""
    a = min(abs(x), _ERF_CLAMP32)
    s = a * a
    p = _ERF_P32[6]
    for i in range(5, -1, -1):
        p = p * s + _ERF_P32[i]
    q = _ERF_Q32[4]
    for i in range(3, -1, -1):
        q = q * s + _ERF_Q32[i]
    t = min(a * p / q, _ONE32)
    return t if x >= _F(0.0) else -t


# ---------------------------------------------------------------- float64
_MAGIC64 = 6755399441055744.0  # 1.5·2⁵²
_MAGIC64_BITS = np.int64(np.array(6755399441055744.0).view(np.int64))
_LOG2E64 = 1.4426950408889634
_LN2_HI64 = 0.6931471803691238  # 33 significant bits: n·LN2_HI exact for |n| < 2²⁰
_LN2_LO64 = 1.9082149292705877e-10
_CLAMP64 = 19.5  # tanh(19.5) rounds to 1 in float64
_SMALL64 = 0.3  # below: 13 Taylor terms
_T64 = _TANH_TAYLOR
_E64 = tuple(1.0 / float(np.prod(np.arange(1, i + 1))) for i in range(14))  # degree 13


@nb.njit(inline="always", fastmath={"contract"}, error_model="numpy", cache=True)
def _exp_neg64(y):  # pragma: no cover - compiled
    # exp(y) for −39 ≤ y ≤ 0.
    k = y * _LOG2E64 + _MAGIC64
    kf = k - _MAGIC64
    r = y - kf * _LN2_HI64
    r = r - kf * _LN2_LO64
    p = _E64[13]
    p = p * r + _E64[12]
    p = p * r + _E64[11]
    p = p * r + _E64[10]
    p = p * r + _E64[9]
    p = p * r + _E64[8]
    p = p * r + _E64[7]
    p = p * r + _E64[6]
    p = p * r + _E64[5]
    p = p * r + _E64[4]
    p = p * r + _E64[3]
    p = p * r + _E64[2]
    p = p * r + _E64[1]
    p = p * r + _E64[0]
    n = _bits_of_f64(k) - _MAGIC64_BITS
    return p * _f64_from_bits((n + np.int64(1023)) << np.int64(52))


@nb.njit(inline="always", fastmath={"contract"}, error_model="numpy", cache=True)
def tanh64(x):  # pragma: no cover - compiled
    """tanh of a float64, vectorisable."""
    a = min(abs(x), _CLAMP64)
    e = _exp_neg64(-2.0 * a)
    big = (1.0 - e) / (1.0 + e)
    s = a * a
    p = _T64[12]
    for i in range(11, -1, -1):
        p = p * s + _T64[i]
    t = a * p if a < _SMALL64 else big
    return t if x >= 0.0 else -t


def tanh(x):  # pragma: no cover - replaced in compiled code by the overload below
    """tanh of a float32 or float64 in compiled code (the dtype's vectorisable version)."""
    raise NotImplementedError("only callable from numba-compiled code")


def erf(x):  # pragma: no cover - replaced in compiled code by the overload below
    """erf of a float32 (vectorisable) or float64 (``math.erf``) in compiled code."""
    raise NotImplementedError("only callable from numba-compiled code")


def exp_neg(y):  # pragma: no cover - replaced in compiled code by the overload below
    """exp(y) for y ≤ 0 in compiled code; clamped to the dtype's smallest normal result."""
    raise NotImplementedError("only callable from numba-compiled code")


def _by_dtype(stub, f32, f64) -> None:
    """Make ``stub`` call ``f32`` on a float32 and ``f64`` on a float64 in compiled code.

    Not inlined at numba's IR level (that trips numba's SSA checks with these branches); LLVM
    inlines the small compiled function into the calling loop, which then vectorises.
    """

    @overload(stub, fastmath={"contract"}, error_model="numpy")
    def _typed(x):  # pragma: no cover - typing
        if x == nb.types.float32:

            def impl32(x):
                return f32(x)

            return impl32

        def impl64(x):
            return f64(x)

        return impl64


_by_dtype(tanh, tanh32, tanh64)
_by_dtype(erf, erf32, math.erf)


@overload(exp_neg, fastmath={"contract"}, error_model="numpy")
def _exp_neg_overload(y):  # pragma: no cover - typing
    if y == nb.types.float32:

        def impl32(y):
            return _exp_neg32(max(y, _F(-87.0)))

        return impl32

    def impl64(y):
        return _exp_neg64(max(y, -708.0))

    return impl64


leave_kernel_cache()
