"""Convolutional EBP layers: a conv is a dense layer whose weight rows are shared across positions.

Layout (CONV_SPEC.md): activations NHWC (batch, height, width, channels); a conv layer's
parameters ``H`` (k·k·C_in, C_out) with rows ordered (ky, kx, c_in), bias ``b`` (C_out,).
:func:`im2col` lays every output position's receptive field out as one row in that same order,
so the layer's pre-activation is ``patches @ M + b`` and all of EBP's dense formulas apply
position by position (Soudry, Hubara & Meir 2014, eqs. for μ, σ² and Δ, with the rows of the
dense matrix tied):

    μ c^½     = conv(⟨v⟩, M) + b
    σ²c − 1   = Σ_valid taps ⟨v²⟩ E(W²) − conv(⟨v⟩², M²)        (c = k·k·C_in + 1, as dense)

Zero padding: a padded tap is absent (⟨v⟩ = ⟨v²⟩ = 0), so on real inputs (x² = 0 there) nothing
changes, and on ±1 units the count of valid taps per position replaces the dense n_in.

The backward pass is the transposed convolution: the gradient with respect to the layer's input
means is col2im(Δ Mᵀ) (:func:`col2im`). The update sums the dense update over the minibatch *and*
the output positions: H += ½ patchesᵀ Δ, b += ½ Σ Δ.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .families import WeightFamily


def im2col(a: np.ndarray, kernel: int, stride: int, pad: int) -> np.ndarray:
    """Receptive fields as rows.

    Parameters
    ----------
    a : ndarray (batch, height, width, channels)
    kernel, stride, pad : int
        k×k window, stride and zero padding on each side.

    Returns
    -------
    ndarray (batch·out_h·out_w, k·k·channels)
        Rows in (batch, oy, ox) order, columns in (ky, kx, c) order. C-contiguous, except for
        one channel: then the transpose of a C-contiguous (k·k, rows) array, built by k² plane
        copies (a strided copy with one-element runs was 2.4× slower, and summing x² along the
        25-element rows of a 5×5 layer 5× slower than down its columns). Same values; products
        with it round as BLAS does for either layout.
    """
    if pad:
        a = np.pad(a, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    a = np.ascontiguousarray(a)
    n, height, width, channels = a.shape
    out_h = (height - kernel) // stride + 1
    out_w = (width - kernel) // stride + 1
    if channels == 1 and kernel > 1:
        planes = np.empty((kernel, kernel, n, out_h, out_w), dtype=a.dtype)
        for ky in range(kernel):
            for kx in range(kernel):
                planes[ky, kx] = a[:, ky : ky + stride * out_h : stride,
                                   kx : kx + stride * out_w : stride, 0]  # fmt: skip
        return planes.reshape(kernel * kernel, n * out_h * out_w).T
    s0, s1, s2, s3 = a.strides
    windows = as_strided(
        a,
        shape=(n, out_h, out_w, kernel, kernel, channels),
        strides=(s0, s1 * stride, s2 * stride, s1, s2, s3),
        writeable=False,
    )
    return windows.reshape(n * out_h * out_w, kernel * kernel * channels)  # one contiguous copy


def col2im(
    cols: np.ndarray, shape: tuple[int, int, int, int], kernel: int, stride: int, pad: int
) -> np.ndarray:
    """The adjoint of :func:`im2col`: sum each row's entries back onto the input positions.

    Parameters
    ----------
    cols : ndarray (batch·out_h·out_w, k·k·channels)
    shape : (batch, height, width, channels) of the unpadded input.

    Returns
    -------
    ndarray ``shape``; padded positions are dropped.
    """
    n, height, width, channels = shape
    padded = np.zeros((n, height + 2 * pad, width + 2 * pad, channels), dtype=cols.dtype)
    out_h = (height + 2 * pad - kernel) // stride + 1
    out_w = (width + 2 * pad - kernel) // stride + 1
    six = cols.reshape(n, out_h, out_w, kernel, kernel, channels)
    for ky in range(kernel):
        for kx in range(kernel):
            padded[:, ky : ky + stride * out_h : stride, kx : kx + stride * out_w : stride, :] += (
                six[:, :, :, ky, kx, :]
            )
    if pad:
        return padded[:, pad : pad + height, pad : pad + width, :]
    return padded


def padded_taps(
    input_hw: tuple[int, int], channels: int, kernel: int, stride: int, pad: int, dtype
) -> np.ndarray | None:
    """1 where a position's tap falls in the zero padding, else 0: (out_h·out_w, k·k·channels).

    None when ``pad`` is 0 (every tap is inside the image).
    """
    if not pad:
        return None
    ones = np.ones((1, input_hw[0], input_hw[1], channels), dtype=dtype)
    return 1 - im2col(ones, kernel, stride, pad)


def weight_second_moment(family: WeightFamily, M2: np.ndarray) -> np.ndarray:
    """E(W²) per weight: 1 for binary weights, M² + prior variance for real ones."""
    if family.name == "binary":
        return np.ones_like(M2)
    return M2 + M2.dtype.type(family.prior_variance)  # type: ignore[attr-defined]


def hidden_conv_variance_sum(
    family: WeightFamily,
    patches: np.ndarray,
    M2: np.ndarray,
    padding: np.ndarray | None,
) -> np.ndarray:
    """σ²c − 1 of a conv over ±1 units, (batch·P, C_out), valid taps only.

    ``family.hidden_variance_sum`` counts all k·k·C_in taps as ±1 units (the dense formula); a
    padded tap has ⟨v⟩ = 0 there and contributes its E(W²) wrongly, so that is subtracted per
    position (``padding`` from :func:`padded_taps`). Without padding this is the dense formula
    exactly (same operations, same bits).
    """
    var_sum = family.hidden_variance_sum(patches, M2)
    if padding is not None:
        correction = padding @ weight_second_moment(family, M2)  # (P, C_out)
        rows, n_out = var_sum.shape
        var_sum.reshape(-1, padding.shape[0], n_out)[...] -= correction
    return var_sum
