"""Compiled kernels on a minibatch's activations (numba), beside the weight passes of
:mod:`._fused`: gathering a minibatch's inputs and targets, finishing a layer's forward pass from
its sums (z, σ√c, ⟨v⟩), the output and hidden Δ of the backward pass, the half-Δ and bias update,
and counting errors. Same equations as :mod:`ebprop.core`.

Arrays are (B, units), padded to the batch size B as in :mod:`._fused`: padding rows get Δ = 0.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from ..core.update import PARAMETER_BOUND
from ._micro import dot, dot_rows
from ._vecmath import erf, exp_neg
from .system import enter_kernel_cache, leave_kernel_cache

enter_kernel_cache()  # numba fixes each function's cache folder when it is decorated

_FM = {"contract"}  # allow FMA contraction only; no reassociation (results stay reproducible)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def finalize(mu, var, b, alpha, beta, const, x2sum, z, scale, v, intercept):  # pragma: no cover
    """z, σ√c and ⟨v⟩ of one layer from its sums (as :func:`ebprop.core.forward.layer_forward`).

    σ²c − 1 = const + alpha·x2sum[b] + beta·var  (layer 1: α Σx² + β x²M²; hidden binary:
    n_in − v²M²; hidden real: (1 − v²)M² + n_in·prior variance). Without ``intercept`` the
    bias's +1 goes: σ²c is that sum floored at the dtype's epsilon (where the +1 kept it from
    0), and z = μ/σ with b not read.
    """
    dt = mu.dtype.type
    # the core's np.maximum(var_sum, floor), then += 1 only with a bias
    floor = dt(0.0) if intercept else dt(np.finfo(mu.dtype).eps)
    for s in range(mu.shape[0]):
        base = dt(const) + dt(alpha) * x2sum[s]
        for k in range(mu.shape[1]):
            vs = base + dt(beta) * var[s, k] if beta != 0.0 else base
            vs = max(vs, floor)
            if intercept:
                vs += dt(1.0)
            sc = math.sqrt(vs)
            zz = (mu[s, k] + b[k]) / sc if intercept else mu[s, k] / sc
            scale[s, k] = sc
            z[s, k] = zz
            v[s, k] = erf(zz * dt(_INV_SQRT_2))  # float32: vectorisable (_vecmath.erf32)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def erfcx(u):  # pragma: no cover - compiled
    # exp(u²) erfc(u) in float64: direct below 3, continued fraction above (no overflow).
    if u < 3.0:
        return math.exp(u * u) * math.erfc(u)
    f = u
    for n in range(60, 0, -1):
        f = u + (0.5 * n) / f
    return _INV_SQRT_PI / f


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def output_delta(y, z, scale, n_valid, delta):  # pragma: no cover - compiled
    """Δ_L = 2y φ(yz)/Φ(yz)/(σ√c); rows ≥ n_valid (padding) get Δ = 0."""
    dt = z.dtype.type
    tiny = dt(np.finfo(z.dtype).tiny)
    for s in range(z.shape[0]):
        for k in range(z.shape[1]):
            if s >= n_valid:
                delta[s, k] = 0.0
                continue
            t = float(y[s, k] * z[s, k])
            ratio = dt(_SQRT_2_OVER_PI / erfcx(-t * _INV_SQRT_2))
            d = (dt(2.0) * y[s, k]) * ratio / scale[s, k]
            delta[s, k] = d if abs(d) >= tiny else dt(0.0)  # no subnormal Δ (core.numerics)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def _pdf_factor(delta, z, scale, c0, c1):  # pragma: no cover - compiled
    # delta[:, c0:c1] *= 2 φ(z)/scale, over slices from index 0: a run-time c0 index made numba
    # check each index for wraparound, which kept the loop scalar (3–7× slower).
    dt = z.dtype.type
    tiny = dt(np.finfo(z.dtype).tiny)
    for s in range(z.shape[0]):
        d, zs, sc = delta[s, c0:c1], z[s, c0:c1], scale[s, c0:c1]
        for k in range(d.shape[0]):
            zz = zs[k]
            e = exp_neg(zz * zz * dt(-0.5))  # vectorisable exp(−z²/2)
            r = d[k] * (dt(2.0) * (e * dt(_INV_SQRT_2PI)) / sc[k])
            d[k] = r if abs(r) >= tiny else dt(0.0)  # no subnormal Δ (core.numerics)


@nb.njit(nogil=True, cache=True)
def hidden_delta_serial(upstream, M_next, z, scale, delta, n_tiles):  # pragma: no cover
    """Δ_l = (Δ_{l+1} M_{l+1}ᵀ) · 2φ(z_l)/(σ_l√c_l), over fixed tiles of the layer's units."""
    n = M_next.shape[0]
    for t in range(n_tiles):
        c0, c1 = (t * n) // n_tiles, ((t + 1) * n) // n_tiles
        dot_rows(upstream, M_next, c0, c1, delta)
        _pdf_factor(delta, z, scale, c0, c1)


@nb.njit(nogil=True, parallel=True, cache=True)
def hidden_delta_parallel(upstream, M_next, z, scale, delta, n_tiles):  # pragma: no cover
    """As :func:`hidden_delta_serial`, one thread per tile."""
    n = M_next.shape[0]
    for t in nb.prange(n_tiles):
        c0, c1 = (t * n) // n_tiles, ((t + 1) * n) // n_tiles
        dot_rows(upstream, M_next, c0, c1, delta)
        _pdf_factor(delta, z, scale, c0, c1)


@nb.njit(nogil=True, cache=True)
def count_errors(out, y, n_valid):  # pragma: no cover - compiled
    """Misclassified rows among the first n_valid (argmax, or the sign for one output)."""
    errors = 0
    for s in range(n_valid):
        if out.shape[1] == 1:
            errors += (out[s, 0] >= 0) != (y[s, 0] >= 0)
        else:
            errors += np.argmax(out[s]) != np.argmax(y[s])
    return errors


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def halve_and_bias(delta, b, intercept):  # pragma: no cover - compiled
    """delta ← ½ delta; with ``intercept``, b ← clip(b + Σ_s delta) (the core's half-delta and
    bias update; without, b is not a parameter and stays as it is)."""
    bound = b.dtype.type(PARAMETER_BOUND)
    half = delta.dtype.type(0.5)
    tiny = delta.dtype.type(np.finfo(delta.dtype).tiny)
    for s in range(delta.shape[0]):
        for k in range(delta.shape[1]):
            h = delta[s, k] * half
            delta[s, k] = h if abs(h) >= tiny else delta.dtype.type(0.0)  # as the core's
    if not intercept:
        return
    for k in range(delta.shape[1]):
        acc = delta[0, k]
        for s in range(1, delta.shape[0]):
            acc += delta[s, k]
        b[k] = min(max(b[k] + acc, -bound), bound)


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def load_inputs(X, idx, x, w, x2sum, active, rows):  # pragma: no cover - compiled
    """Gather a minibatch: x (B, n_0) padded with zeros, w = x², Σx² per sample; mark the
    inputs that are non-zero in some sample and list them in ``rows``; return their number.
    (No xᵀ: the update's BLAS call reads x transposed, :func:`._blas.gemm`.)"""
    B, n0 = x.shape
    nb_ = idx.shape[0]
    dt = x.dtype.type
    active[:] = False
    xf = x.reshape(-1)
    for s in range(B):
        if s < nb_:
            src = X[idx[s]]
            for j in range(n0):  # no branch and no running sum here: the loop vectorises
                xv = dt(src[j])
                x[s, j] = xv
                w[s, j] = xv * xv
                active[j] |= xv != 0
        else:
            x[s, :] = 0
            w[s, :] = 0
        x2sum[s] = dot(xf, s * n0, xf, s * n0, n0)  # Σx², in vector lanes
    n = 0
    for j in range(n0):
        if active[j]:
            rows[n] = j
            n += 1
    return n


@nb.njit(nogil=True, cache=True)
def compact_columns(A, rows, n, out):  # pragma: no cover - compiled
    """out[:, :n] = A[:, rows[:n]] (the forward coefficients of the non-zero inputs)."""
    for s in range(A.shape[0]):
        for i in range(n):
            out[s, i] = A[s, rows[i]]


@nb.njit(fastmath=_FM, error_model="numpy", nogil=True, cache=True)
def hidden_inputs(v, w, real):  # pragma: no cover - compiled
    """The next layer's variance coefficients w = v² (binary) or 1 − v² (real)."""
    one = v.dtype.type(1.0)
    for s in range(v.shape[0]):
        vs, ws = v[s], w[s]
        for j in range(vs.shape[0]):
            vv = vs[j]
            ws[j] = one - vv * vv if real else vv * vv


@nb.njit(nogil=True, cache=True)
def load_targets(Y, idx, y):  # pragma: no cover - compiled
    """y[:len(idx)] = Y[idx]; the padding rows are never read (their Δ is set to 0)."""
    for s in range(idx.shape[0]):
        y[s, :] = Y[idx[s]]


leave_kernel_cache()
