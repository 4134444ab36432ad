"""Explicit SIMD vectors for numba kernels: LLVM vectors of the CPU's register width, a numba type.

LLVM's auto-vectoriser gives up on the register-blocked loops of the fused layer pass: numba
cannot mark its array arguments ``noalias``, and with more than a few arrays in a loop LLVM drops
the run-time alias checks and emits scalar code (docs/performance.md, decision 2).
These intrinsics let a kernel say what it means instead: a value of type :class:`VecType` is an LLVM
vector held in a register, loaded from and stored to a 1-D C-contiguous array at a flat element
index.

Width: :data:`VECTOR_BYTES`, 64 (``<16 x float>``, ``<8 x double>``) where numba compiles for a
CPU with AVX-512F, else 32 (``<8 x float>``, ``<4 x double>``). LLVM's loop vectoriser keeps to
256 bits on Intel's AVX-512 server cores (its "prefer-256-bit" tuning), and numba gives no way to
change that per function, so the explicit vectors are the only 512-bit code. On an Emerald Rapids
core the forward sums of an 800 × 800 layer ran 1.25× faster with 64-byte vectors
(``benchmarks/archive/layer_parts.py``, docs/performance.md, decision 2). The width follows the
CPU that numba targets (``NUMBA_CPU_FEATURES`` if set, else the host's), which numba's on-disk
cache keys its kernels on too, so a cached kernel never has another width.

The width changes the order of some sums (a dot product's lanes), so results agree across
machines to round-off, not to the bit. No bounds or wraparound checks are made: callers index
within their arrays. On a CPU without FMA, ``llvm.fmuladd`` becomes a multiply and an add. The
same program gives the same bits for the same inputs on one machine, whatever column a value falls
in (the masked loads below use the same arithmetic as the full ones).
"""

from __future__ import annotations

import llvmlite.binding as ll
import numba as nb
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

__all__ = [
    "VECTOR_BYTES", "lanes", "vabs", "vbload", "vdiv", "vfma", "vlane", "vload", "vload_part",
    "vmax", "vmin", "vmul", "vpair_sums", "vsign_of", "vsplat", "vstore", "vstore_part", "vsum",
    "vzero",
]  # fmt: skip


def _target_has_avx512f() -> bool:
    # numba's own rule for the features it compiles for (numba.core.codegen): the configured
    # string if there is one, else the host's
    features = nb.config.CPU_FEATURES
    if features is None:
        features = ll.get_host_cpu_features().flatten()
    return "+avx512f" in features.split(",")


#: Bytes per explicit vector: one AVX-512 register where the target CPU has them, else one AVX one.
VECTOR_BYTES = 64 if _target_has_avx512f() else 32


class VecType(nb.types.Type):
    """A vector of :data:`VECTOR_BYTES` bytes of ``dtype`` (32 bytes: 8 float32 or 4 float64
    lanes; 64 bytes: 16 or 8)."""

    def __init__(self, dtype: nb.types.Float) -> None:
        self.dtype = dtype
        self.lanes = VECTOR_BYTES // (dtype.bitwidth // 8)
        super().__init__(name=f"Vec({dtype}x{self.lanes})")


_VEC = {d: VecType(d) for d in (nb.types.float32, nb.types.float64)}


def _llvm_vec(vt: VecType) -> ir.VectorType:
    scalar = ir.FloatType() if vt.dtype == nb.types.float32 else ir.DoubleType()
    return ir.VectorType(scalar, vt.lanes)


@register_model(VecType)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):  # pragma: no cover - registered with numba
        super().__init__(dmm, fe_type, _llvm_vec(fe_type))


def _vec_of(arr: nb.types.Array) -> VecType:
    if not isinstance(arr, nb.types.Array) or arr.dtype not in _VEC:
        raise nb.errors.TypingError(f"expected a float32 or float64 array, got {arr}")
    return _VEC[arr.dtype]


def _address(context, builder, arrty, arr, idx, vt):
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.bitcast(builder.gep(data, [idx]), _llvm_vec(vt).as_pointer())


def _mask(builder, vt, n):
    # lanes 0 … n−1 on
    lane_ids = ir.Constant(ir.VectorType(ir.IntType(64), vt.lanes), list(range(vt.lanes)))
    n64 = builder.sext(n, ir.IntType(64)) if n.type.width < 64 else n
    splat = _splat(builder, n64, ir.VectorType(ir.IntType(64), vt.lanes))
    return builder.icmp_signed("<", lane_ids, splat)


def _masked(builder, vt, op):
    # LLVM's llvm.masked.load / llvm.masked.store for vt, and the alignment argument
    lty, mask = _llvm_vec(vt), ir.VectorType(ir.IntType(1), vt.lanes)
    i32, ptr = ir.IntType(32), lty.as_pointer()
    if op == "load":  # (pointer, alignment, mask, pass-through) -> vector
        fnty = ir.FunctionType(lty, [ptr, i32, mask, lty])
    else:  # (vector, pointer, alignment, mask)
        fnty = ir.FunctionType(ir.VoidType(), [lty, ptr, i32, mask])
    suffix = f"v{vt.lanes}f{vt.dtype.bitwidth}"
    name = f"llvm.masked.{op}.{suffix}.p0{suffix}"
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    return fn, ir.Constant(i32, vt.dtype.bitwidth // 8)


def _splat(builder, x, vty):
    v = builder.insert_element(ir.Constant(vty, ir.Undefined), x, ir.Constant(ir.IntType(32), 0))
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), vty.count), [0] * vty.count)
    return builder.shuffle_vector(v, v, zeros)  # lane 0 everywhere


@intrinsic
def lanes(typingctx, arr):  # pragma: no cover - compiled
    """The number of lanes of a vector of ``arr``'s dtype (a compile-time constant)."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        return ir.Constant(ir.IntType(64), vt.lanes)

    return nb.types.int64(arr), codegen


@intrinsic
def vload(typingctx, arr, idx):  # pragma: no cover - compiled
    """``arr[idx : idx + lanes]`` as a vector (``arr`` 1-D, C-contiguous)."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        p = _address(context, builder, sig.args[0], args[0], args[1], vt)
        return builder.load(p, align=vt.dtype.bitwidth // 8)

    return vt(arr, idx), codegen


@intrinsic
def vload_part(typingctx, arr, idx, n):  # pragma: no cover - compiled
    """``arr[idx : idx + n]`` in the first ``n`` lanes, zeros after (0 ≤ n ≤ lanes; the
    elements beyond ``n`` are not read)."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        p = _address(context, builder, sig.args[0], args[0], args[1], vt)
        fn, align = _masked(builder, vt, "load")
        zeros = ir.Constant(_llvm_vec(vt), None)
        return builder.call(fn, [p, align, _mask(builder, vt, args[2]), zeros])

    return vt(arr, idx, n), codegen


@intrinsic
def vstore(typingctx, arr, idx, v):  # pragma: no cover - compiled
    """``arr[idx : idx + lanes] = v``."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        p = _address(context, builder, sig.args[0], args[0], args[1], vt)
        builder.store(args[2], p, align=vt.dtype.bitwidth // 8)
        return context.get_dummy_value()

    return nb.types.none(arr, idx, vt), codegen


@intrinsic
def vstore_part(typingctx, arr, idx, v, n):  # pragma: no cover - compiled
    """``arr[idx : idx + n] = v[:n]`` (the elements beyond ``n`` are not written)."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        p = _address(context, builder, sig.args[0], args[0], args[1], vt)
        fn, align = _masked(builder, vt, "store")
        builder.call(fn, [args[2], p, align, _mask(builder, vt, args[3])])
        return context.get_dummy_value()

    return nb.types.none(arr, idx, vt, n), codegen


@intrinsic
def vbload(typingctx, arr, idx):  # pragma: no cover - compiled
    """``arr[idx]`` in every lane."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        x = builder.load(builder.gep(data, [args[1]]), align=vt.dtype.bitwidth // 8)
        return _splat(builder, x, _llvm_vec(vt))

    return vt(arr, idx), codegen


@intrinsic
def vzero(typingctx, arr):  # pragma: no cover - compiled
    """A vector of zeros of ``arr``'s dtype."""
    vt = _vec_of(arr)

    def codegen(context, builder, sig, args):
        return ir.Constant(_llvm_vec(vt), None)

    return vt(arr), codegen


@intrinsic
def vfma(typingctx, a, b, c):  # pragma: no cover - compiled
    """a·b + c per lane (fused where the CPU has FMA: ``llvm.fmuladd``)."""
    if not (isinstance(a, VecType) and a == b == c):
        raise nb.errors.TypingError("vfma expects three vectors of one type")

    def codegen(context, builder, sig, args):
        lty = _llvm_vec(a)
        name = f"llvm.fmuladd.v{a.lanes}f{a.dtype.bitwidth}"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(lty, [lty] * 3), name)
        return builder.call(fn, list(args))

    return a(a, b, c), codegen


@intrinsic
def vmul(typingctx, a, b):  # pragma: no cover - compiled
    """a·b per lane."""
    if not (isinstance(a, VecType) and a == b):
        raise nb.errors.TypingError("vmul expects two vectors of one type")

    def codegen(context, builder, sig, args):
        return builder.fmul(args[0], args[1])

    return a(a, b), codegen


@intrinsic
def vsum(typingctx, a):  # pragma: no cover - compiled
    """The sum of a vector's lanes in a fixed order: pairwise (0 + 1, 2 + 3, …), then again."""
    if not isinstance(a, VecType):
        raise nb.errors.TypingError("vsum expects a vector")

    def codegen(context, builder, sig, args):
        lane = [ir.Constant(ir.IntType(32), j) for j in range(a.lanes)]
        parts = [builder.extract_element(args[0], j) for j in lane]
        while len(parts) > 1:
            parts = [builder.fadd(parts[j], parts[j + 1]) for j in range(0, len(parts), 2)]
        return parts[0]

    return a.dtype(a), codegen


@intrinsic
def vpair_sums(typingctx, a, b):  # pragma: no cover - compiled
    """The sums of neighbouring lanes, a's then b's: (a0 + a1, a2 + a3, …, b0 + b1, …).

    One level of :func:`vsum`'s order for two vectors at once (two shuffles and one vector add
    instead of a scalar add per pair). Applied as a tree to as many vectors as there are lanes,
    ``vpair_sums(vpair_sums(v0, v1), vpair_sums(v2, v3))`` for 4 lanes, it leaves in lane j the
    bits of ``vsum(vj)``."""
    _same_vectors("vpair_sums", a, b)

    def codegen(context, builder, sig, args):
        ids = ir.VectorType(ir.IntType(32), a.lanes)
        even = ir.Constant(ids, list(range(0, 2 * a.lanes, 2)))
        odd = ir.Constant(ids, list(range(1, 2 * a.lanes, 2)))
        x, y = args
        return builder.fadd(builder.shuffle_vector(x, y, even), builder.shuffle_vector(x, y, odd))

    return a(a, b), codegen


@intrinsic
def vlane(typingctx, a, j):  # pragma: no cover - compiled
    """Lane ``j`` of a vector (``0 ≤ j < lanes``, not checked)."""
    _same_vectors("vlane", a)
    if not isinstance(j, nb.types.Integer):
        raise nb.errors.TypingError("vlane expects an integer lane")

    def codegen(context, builder, sig, args):
        return builder.extract_element(args[0], args[1])

    return a.dtype(a, j), codegen


def _same_vectors(name, *args):
    if not (isinstance(args[0], VecType) and all(a == args[0] for a in args)):
        raise nb.errors.TypingError(f"{name} expects vectors of one type")


@intrinsic
def vsplat(typingctx, x):  # pragma: no cover - compiled
    """The scalar ``x`` (float32 or float64) in every lane."""
    if x not in _VEC:
        raise nb.errors.TypingError(f"vsplat expects a float32 or float64, got {x}")
    vt = _VEC[x]

    def codegen(context, builder, sig, args):
        return _splat(builder, args[0], _llvm_vec(vt))

    return vt(x), codegen


@intrinsic
def vdiv(typingctx, a, b):  # pragma: no cover - compiled
    """a / b per lane (IEEE division, as the scalar ``/``)."""
    _same_vectors("vdiv", a, b)

    def codegen(context, builder, sig, args):
        return builder.fdiv(args[0], args[1])

    return a(a, b), codegen


@intrinsic
def vmin(typingctx, a, b):  # pragma: no cover - compiled
    """``min(a, b)`` per lane as numba's scalar ``min`` computes it: b where b < a, else a
    (so a NaN in ``a`` stays, one in ``b`` gives ``a``)."""
    _same_vectors("vmin", a, b)

    def codegen(context, builder, sig, args):
        return builder.select(builder.fcmp_ordered("<", args[1], args[0]), args[1], args[0])

    return a(a, b), codegen


@intrinsic
def vmax(typingctx, a, b):  # pragma: no cover - compiled
    """``max(a, b)`` per lane as numba's scalar ``max``: b where b > a, else a."""
    _same_vectors("vmax", a, b)

    def codegen(context, builder, sig, args):
        return builder.select(builder.fcmp_ordered(">", args[1], args[0]), args[1], args[0])

    return a(a, b), codegen


@intrinsic
def vabs(typingctx, a):  # pragma: no cover - compiled
    """|a| per lane (``llvm.fabs``, as the scalar ``abs``)."""
    _same_vectors("vabs", a)

    def codegen(context, builder, sig, args):
        lty = _llvm_vec(a)
        name = f"llvm.fabs.v{a.lanes}f{a.dtype.bitwidth}"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(lty, [lty]), name)
        return builder.call(fn, [args[0]])

    return a(a), codegen


@intrinsic
def vsign_of(typingctx, x, t):  # pragma: no cover - compiled
    """``t if x >= 0 else -t`` per lane, as the scalar expression (−t is −0.0 − t there)."""
    _same_vectors("vsign_of", x, t)

    def codegen(context, builder, sig, args):
        neg = builder.fsub(ir.Constant(_llvm_vec(t), [-0.0] * t.lanes), args[1])
        zero = ir.Constant(_llvm_vec(x), None)
        return builder.select(builder.fcmp_ordered(">=", args[0], zero), args[1], neg)

    return t(x, t), codegen
