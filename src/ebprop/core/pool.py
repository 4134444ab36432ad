"""Max-pooling of ±1 units under EBP's independence assumption.

A window's output is +1 iff any input is +1. With p_i = P(v_i = +1) = (1 + ⟨v_i⟩)/2 and the
inputs independent (the mean-field assumption of EBP's forward pass):

    P(v_out = +1) = 1 − Π_i (1 − p_i),        ⟨v_out⟩ = 1 − 2 Π_i q_i,   q_i = (1 − ⟨v_i⟩)/2
    ∂⟨v_out⟩/∂⟨v_i⟩ = Π_{j≠i} q_j

The output is again a ±1 unit (⟨v²⟩ = 1), so the next layer treats it as any hidden unit. Pools
are k×k with stride k; rows and columns that do not fill a window are dropped (floor), and their
gradient is 0. The deterministic network (EBP-D) pools by a max over ±1, i.e. an OR of bits.
"""

from __future__ import annotations

import numpy as np


def _window_positions(a: np.ndarray, size: int) -> list[np.ndarray]:
    """The k² strided views of ``a`` (batch, H, W, C), one per window position (dy, dx) in row
    order, each (batch, H//k, W//k, C): no transposed copy of the windows. Views of a writeable
    ``a`` are writeable (the backward pass scatters through them)."""
    oh, ow = a.shape[1] // size, a.shape[2] // size
    return [
        a[:, dy : dy + oh * size : size, dx : dx + ow * size : size, :]
        for dy in range(size)
        for dx in range(size)
    ]


def maxpool_forward(v: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """⟨v_out⟩ of a k×k max-pool over ±1 units of means ``v``.

    Parameters
    ----------
    v : ndarray (batch, H, W, C), means in [−1, 1].
    size : int, k.

    Returns
    -------
    v_out : ndarray (batch, H//k, W//k, C)
    q : ndarray (k·k, batch, H//k, W//k, C), each window position's q_i = (1 − ⟨v_i⟩)/2, for
        the backward pass.
    """
    n, height, width, channels = v.shape
    oh, ow = height // size, width // size
    q = np.empty((size * size, n, oh, ow, channels), dtype=v.dtype)
    half = v.dtype.type(0.5)
    for i, part in enumerate(_window_positions(v, size)):
        np.subtract(1, part, out=q[i])
        q[i] *= half
    prod = q[0].copy()
    for i in range(1, size * size):
        prod *= q[i]
    prod *= -2
    prod += 1
    return prod, q


def maxpool_backward(grad_out: np.ndarray, q: np.ndarray, input_shape: tuple, size: int):
    """Gradient with respect to the pool's input means, from that with respect to its output.

    Parameters
    ----------
    grad_out : ndarray (batch, H//k, W//k, C)
    q : the ``q`` returned by :func:`maxpool_forward`.
    input_shape : (batch, H, W, C) of the pool's input.

    Returns
    -------
    ndarray ``input_shape``: grad_out · Π_{j≠i} q_j at each window input, 0 where dropped.
    """
    window = size * size
    grad = np.zeros(input_shape, dtype=grad_out.dtype)
    # Π_{j≠i} q_j = (q_0 ⋯ q_{i−1}) · (q_{i+1} ⋯ q_{k²−1}): prefix times suffix products, not
    # Π/q_i (which fails where an input is surely +1, q_i = 0).
    suffix = [grad_out]  # grad_out · q_{i+1} ⋯ q_{k²−1}, built from the end
    for j in range(window - 1, 0, -1):
        suffix.append(suffix[-1] * q[j])
    suffix.reverse()
    prefix = None  # q_0 ⋯ q_{i−1}
    for i, out in enumerate(_window_positions(grad, size)):
        if prefix is None:
            np.copyto(out, suffix[i])
            prefix = q[0].copy()
        else:
            np.multiply(prefix, suffix[i], out=out)
            if i + 1 < window:
                prefix *= q[i]
    return grad


def maxpool_deterministic(h: np.ndarray, size: int) -> np.ndarray:
    """EBP-D pooling of ±1 units (batch, H, W, C): the window max, i.e. +1 iff any input is +1.

    Returns (batch, H//k, W//k, C). The max of the k² window positions' strided views, as
    :func:`maxpool_forward` takes them: a transposed copy of the windows and a max over the last
    axis took 2–3× longer.
    """
    parts = _window_positions(h, size)
    out = parts[0].copy()
    for part in parts[1:]:
        np.maximum(out, part, out=out)
    return out
