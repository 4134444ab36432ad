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
from dataclasses import dataclass
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
    b: np.ndarray, weight_sums: np.ndarray, max_value: int, scaling: str, input_gain: float = 1.0
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
    input_gain : float
        The preprocessor's gain g (features g·x): the unit fires iff g·(…) + b ≥ 0, i.e. as
        above with b/g, taken exactly.

    Returns
    -------
    list of int, one per unit (see :func:`clip_thresholds` for a fixed-width array)
    """
    m, gain = Fraction(int(max_value)), Fraction(float(input_gain))
    out = []
    for bias, wsum in zip(np.asarray(b), np.asarray(weight_sums), strict=True):
        exact_b = Fraction(float(bias)) / gain
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


# ---------------------------------------------------------------------------- integer output layer
def output_values(bias: np.ndarray, n: int) -> np.ndarray:
    """Every value the EBP-D output layer can produce: V[k, m] = fl(n − 2m + b_k).

    Parameters
    ----------
    bias : ndarray (n_out,), float32 or float64
        Output biases b_L.
    n : int
        Width of the last hidden layer; m = popcount(a XOR w_k) ∈ 0..n is the mismatch count.

    Returns
    -------
    ndarray (n_out, n + 1) in bias's dtype, computed as the float path does (one rounding).
    """
    bias = np.asarray(bias)
    dots = (n - 2 * np.arange(n + 1)).astype(bias.dtype)
    return dots[None, :] + bias[:, None]


def order_isomorphic(values: np.ndarray, keys: np.ndarray) -> bool:
    """True when ``keys`` orders the entries exactly as ``values`` does, ties included.

    Checked on the sorted values: adjacent keys must rise exactly where the values rise and be
    equal where the values are equal. Then argmax (first maximum) of any selection of entries
    is the same under keys and values.
    """
    order = np.argsort(values, axis=None, kind="stable")
    dv = np.diff(values.ravel()[order])
    dk = np.diff(keys.ravel()[order].astype(np.int64))
    return bool(np.all(dk >= 0) and np.array_equal(dv > 0, dk > 0))


@dataclass(frozen=True)
class OutputFold:
    """The output layer's real biases folded into integers, argmax exactly preserved.

    Integer key of class k with m mismatches (m = popcount(a XOR w_k)):

    * ``"linear"``: key = base[k] − step·m, base[k] = n·M + floor(M·b_k), step = 2M, M = 2^s
      (the largest that keeps |key| < 2^30). Verified against every (k, m) by
      :func:`order_isomorphic`: the float rounding of n − 2m + b_k cannot reorder or tie two
      entries that the keys order differently.
    * ``"table"``: key = table[k, m], the rank of V[k, m] among all output values; used when
      the linear keys fail that check (biases differing by almost exactly an even integer).
    * ``"threshold"`` (one output unit): class 1 iff m ≤ base[0], exact as for hidden units.
    """

    kind: str
    base: np.ndarray
    step: int = 0
    table: np.ndarray | None = None

    def keys(self, mismatches: np.ndarray) -> np.ndarray:
        """Integer keys of mismatch counts (..., n_out) → (..., n_out) int64."""
        m = np.asarray(mismatches, dtype=np.int64)
        if self.kind == "table":
            return self.table[np.arange(m.shape[-1]), m]
        return self.base.astype(np.int64) - self.step * m

    def predict_index(self, mismatches: np.ndarray) -> np.ndarray:
        """Class index per row of mismatch counts (batch, n_out): the first maximum of the keys,
        or for one output unit 1 iff m ≤ base[0]."""
        m = np.asarray(mismatches, dtype=np.int64)
        if self.kind == "threshold":
            return (m[:, 0] <= self.base[0]).astype(np.intp)
        return self.keys(m).argmax(axis=1)


_KEY_LIMIT = 2**30 - 1  # |key| and step·m stay inside int32 arithmetic


def max_mismatches(threshold: int, n: int) -> int:
    """dot = n − 2m ≥ T ⇔ m ≤ floor((n − T)/2): the same decision on the mismatch count."""
    return (n - int(threshold)) // 2


def fold_output_bias(bias: np.ndarray, n: int) -> OutputFold:
    """Fold the output biases into integer keys that give exactly the float path's argmax.

    Parameters
    ----------
    bias : ndarray (n_out,), float32 or float64
    n : int
        Width of the last hidden layer.

    Returns
    -------
    OutputFold (see its docstring); proven against all (n_out)·(n + 1) output values.
    """
    bias = np.asarray(bias)
    if bias.shape[0] == 1:
        # fl(d + b) ≥ 0 ⇔ d + b ≥ 0 (d + b is exact when tiny, Sterbenz) ⇔ d ≥ ceil(−b)
        t = hidden_thresholds(bias)[0]
        fold = OutputFold("threshold", np.array([max_mismatches(t, n)], dtype=np.int64))
        m = np.arange(n + 1)
        fires = output_values(bias, n)[0] >= 0
        assert np.array_equal(fires, m <= fold.base[0])  # cannot fail: proven above
        return fold
    exact = [Fraction(float(v)) for v in bias]
    span = n + max(abs(v) for v in exact) + 1
    values = output_values(bias, n)
    if span <= _KEY_LIMIT:
        shift = 0
        while span * 2 ** (shift + 1) <= _KEY_LIMIT:
            shift += 1
        scale = 2**shift
        base = np.array([n * scale + math.floor(v * scale) for v in exact], dtype=np.int64)
        fold = OutputFold("linear", base, 2 * scale)
        grid = np.repeat(np.arange(n + 1)[:, None], len(bias), axis=1)  # (n + 1, n_out)
        if order_isomorphic(values, fold.keys(grid).T):
            return fold
    _, ranks = np.unique(values, return_inverse=True)
    table = ranks.reshape(values.shape).astype(np.int64)
    return OutputFold("table", np.zeros(len(bias), dtype=np.int64), 0, table)
