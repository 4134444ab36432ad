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


def _windows(v: np.ndarray, size: int) -> np.ndarray:
    """(batch, H, W, C) → (batch, H//k, W//k, C, k·k) view-or-copy of the k×k windows."""
    n, height, width, channels = v.shape
    oh, ow = height // size, width // size
    v = v[:, : oh * size, : ow * size, :]
    six = v.reshape(n, oh, size, ow, size, channels)
    return six.transpose(0, 1, 3, 5, 2, 4).reshape(n, oh, ow, channels, size * size)


def maxpool_forward(v: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """⟨v_out⟩ of a k×k max-pool over ±1 units of means ``v``.

    Parameters
    ----------
    v : ndarray (batch, H, W, C), means in [−1, 1].
    size : int, k.

    Returns
    -------
    v_out : ndarray (batch, H//k, W//k, C)
    q : ndarray (batch, H//k, W//k, C, k·k), the windows' q_i = (1 − ⟨v_i⟩)/2 (for the backward).
    """
    half = v.dtype.type(0.5)
    q = _windows(v, size)
    q = (1 - q) * half
    v_out = 1 - 2 * np.prod(q, axis=-1)
    return v_out, q


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
    # Π_{j≠i} q_j by products of the others (not Π/q_i, which fails where q_i = 0).
    others = np.empty_like(q)
    for i in range(window):
        rest = [j for j in range(window) if j != i]
        prod = q[..., rest[0]].copy() if rest else np.ones_like(q[..., 0])
        for j in rest[1:]:
            prod *= q[..., j]
        others[..., i] = prod
    others *= grad_out[..., None]
    n, height, width, channels = input_shape
    oh, ow = height // size, width // size
    grad = np.zeros(input_shape, dtype=grad_out.dtype)
    six = others.reshape(n, oh, ow, channels, size, size).transpose(0, 1, 4, 2, 5, 3)
    grad[:, : oh * size, : ow * size, :] = six.reshape(n, oh * size, ow * size, channels)
    return grad


def maxpool_deterministic(h: np.ndarray, size: int) -> np.ndarray:
    """EBP-D pooling of ±1 units (batch, H, W, C): the window max, i.e. +1 iff any input is +1."""
    return _windows(h, size).max(axis=-1)
