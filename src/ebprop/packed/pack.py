"""Bit packing and the integer arithmetic of a binary (±1) network, as pure NumPy functions.

Conventions, stated once for the package:

* A ±1 vector of length ``n`` is packed as bits (1 ↔ +1, 0 ↔ −1) into ``ceil(n / 64)`` unsigned
  64-bit words, little-endian bit order: element ``j`` is bit ``j % 64`` of word ``j // 64``. The
  padding bits past ``n`` are 0 in activations *and* weights, so they never differ and never
  count in ``popcount(a XOR w)``.
* Weights are stored one row per *output* unit: a layer with H of shape (n_in, n_out) becomes
  ``(n_out, words)`` uint64 — the transpose of the core layout, so a unit's weights are
  contiguous.
* For ±1 vectors a, w of length n: ``a · w = n − 2·popcount(a XOR w)`` (matches add +1,
  mismatches add −1).

The EBP-D network (``ebprop.core.predict.predict_deterministic``) uses W = sign(H) with
sign(0) = +1 and hidden units sign(W·h + b) with sign(0) = +1. A unit fires (+1) iff its
pre-activation is ≥ 0; with an integer dot product s and a real bias b, ``s + b ≥ 0`` ⇔
``s ≥ ceil(−b)`` — an integer threshold, computed here in exact rational arithmetic
(:class:`fractions.Fraction` holds a float's exact value), so no rounding enters the decision.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

WORD_BITS = 64
_CHUNK_ELEMENTS = 1 << 22  # words per temporary in the NumPy kernels (32 MiB of uint64)


def n_words(n: int) -> int:
    """Number of 64-bit words holding ``n`` bits."""
    return -(-int(n) // WORD_BITS)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack the last axis of a boolean array into little-endian uint64 words.

    Parameters
    ----------
    bits : ndarray of bool, shape (..., n)
        True ↔ +1.

    Returns
    -------
    ndarray of uint64, shape (..., ceil(n / 64)); padding bits are 0.
    """
    bits = np.asarray(bits, dtype=bool)
    n = bits.shape[-1]
    words = n_words(n)
    packed = np.packbits(bits, axis=-1, bitorder="little")  # (..., ceil(n / 8)) uint8
    pad = words * 8 - packed.shape[-1]
    if pad:
        widths = [(0, 0)] * (packed.ndim - 1) + [(0, pad)]
        packed = np.pad(packed, widths)
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64, copy=False)


def unpack_bits(words: np.ndarray, n: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: (..., words) uint64 → (..., n) bool."""
    as_bytes = np.ascontiguousarray(words.astype("<u8", copy=False)).view(np.uint8)
    return np.unpackbits(as_bytes, axis=-1, count=n, bitorder="little").astype(bool)


def padding_is_zero(words: np.ndarray, n: int) -> bool:
    """True when every bit past ``n`` in the rows ``words`` (..., ceil(n/64)) is 0."""
    rem = n % WORD_BITS
    if rem == 0 or words.shape[-1] == 0:
        return True
    mask = np.uint64(~((1 << rem) - 1) & 0xFFFFFFFFFFFFFFFF)
    return not np.any(words[..., -1] & mask)


def sign_weights(H: np.ndarray) -> np.ndarray:
    """EBP-D binary weights as bits: H (n_in, n_out) → (n_out, n_in) bool, True ↔ +1 (H ≥ 0)."""
    return np.ascontiguousarray((np.asarray(H) >= 0).T)


def ceil_threshold(value: Fraction) -> int:
    """ceil of an exact rational (Python ints are unbounded, so this never overflows)."""
    return math.ceil(value)


def hidden_thresholds(b: np.ndarray) -> list[int]:
    """Integer thresholds T = ceil(−b) of binary-input units, one Python int per unit.

    A unit with integer dot product s fires iff ``s + b ≥ 0`` ⇔ ``s ≥ ceil(−b)`` (exact: b is
    taken at its exact binary value). See :func:`clip_thresholds` for a fixed-width array.
    """
    return [ceil_threshold(-Fraction(float(v))) for v in np.asarray(b)]


def pixel_thresholds(
    b: np.ndarray, weight_sums: np.ndarray, max_value: int, scaling: str
) -> np.ndarray:
    """Integer thresholds on the pixel dot product s = Σ_j w_j p_j of the first layer.

    Parameters
    ----------
    b : ndarray (n_out,)
        Real biases of the first layer.
    weight_sums : ndarray (n_out,)
        Σ_j w_j of each unit (number of +1 weights minus number of −1 weights).
    max_value : int
        Largest raw pixel value m (255 for MNIST, 16 for digits).
    scaling : {"unit", "symmetric"}
        ``unit``: x = p/m, so the unit fires iff s/m + b ≥ 0 ⇔ s ≥ ceil(−m·b).
        ``symmetric``: x = 2p/m − 1, so it fires iff (2s − m·Σw)/m + b ≥ 0
        ⇔ s ≥ ceil((m·Σw − m·b)/2).

    Returns
    -------
    list of int, one per unit (see :func:`clip_thresholds` for a fixed-width array)
    """
    m = Fraction(int(max_value))
    out = []
    for bias, wsum in zip(np.asarray(b), np.asarray(weight_sums), strict=True):
        exact_b = Fraction(float(bias))
        if scaling == "unit":
            out.append(ceil_threshold(-m * exact_b))
        elif scaling == "symmetric":
            out.append(ceil_threshold((m * int(wsum) - m * exact_b) / 2))
        else:
            raise ValueError(f"scaling must be 'unit' or 'symmetric', got {scaling!r}")
    return out


def clip_thresholds(thresholds: list[int], lo: int, hi: int) -> np.ndarray:
    """Clamp thresholds to [lo, hi + 1] when the dot product s always lies in [lo, hi].

    Decisions ``s ≥ T`` are unchanged: T ≤ lo always fires, T > hi never does. Keeps huge biases
    from overflowing a fixed-width integer. Returns int64 (n_out,).
    """
    return np.array([min(max(int(t), lo), hi + 1) for t in thresholds], dtype=np.int64)


def smallest_int_dtype(lo: int, hi: int) -> np.dtype:
    """The narrowest of int16/int32/int64 holding [lo, hi]."""
    for dt in (np.int16, np.int32, np.int64):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    raise ValueError(f"range [{lo}, {hi}] does not fit in int64")


def binary_dot(a: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    """±1 dot products from packed bits: n − 2·popcount(a XOR w).

    Parameters
    ----------
    a : ndarray of uint64, shape (batch, words)
        Packed activations.
    w : ndarray of uint64, shape (n_out, words)
        Packed weight rows.
    n : int
        Unpadded length of the vectors.

    Returns
    -------
    ndarray of int32, shape (batch, n_out)
    """
    batch, words = a.shape
    out = np.empty((batch, w.shape[0]), dtype=np.int32)
    step = max(1, _CHUNK_ELEMENTS // max(1, w.size))
    for s in range(0, batch, step):
        x = np.bitwise_xor(a[s : s + step, None, :], w[None, :, :])
        mismatches = np.bitwise_count(x).sum(axis=-1, dtype=np.int32)
        out[s : s + step] = n - 2 * mismatches
    return out


def pixel_dot(pixels: np.ndarray, w: np.ndarray) -> np.ndarray:
    """s = Σ_j w_j p_j for uint8 pixels and packed ±1 weights, by bit planes, no multiplication.

    With the pixel bit planes p = Σ_k 2^k p^(k) (p^(k) ∈ {0, 1}) and w = 2·[bit] − 1:
    Σ_j w_j p^(k)_j = 2·popcount(P_k AND W) − popcount(P_k), so
    s = Σ_k 2^k (2·popcount(P_k AND W) − popcount(P_k)), all in integers.

    Parameters
    ----------
    pixels : ndarray of uint8, shape (batch, n_in)
    w : ndarray of uint64, shape (n_out, words)

    Returns
    -------
    ndarray of int32, shape (batch, n_out)
    """
    batch = pixels.shape[0]
    out = np.zeros((batch, w.shape[0]), dtype=np.int32)
    planes = np.unpackbits(pixels[:, :, None], axis=2, bitorder="little")  # (batch, n_in, 8)
    step = max(1, _CHUNK_ELEMENTS // max(1, w.size))
    for k in range(8):
        P = pack_bits(planes[:, :, k].astype(bool))  # (batch, words)
        if not P.any():
            continue
        ones = np.bitwise_count(P).sum(axis=-1, dtype=np.int32)  # (batch,)
        for s in range(0, batch, step):
            both = np.bitwise_and(P[s : s + step, None, :], w[None, :, :])
            hits = np.bitwise_count(both).sum(axis=-1, dtype=np.int32)
            out[s : s + step] += (2 * hits - ones[s : s + step, None]) << k
    return out
