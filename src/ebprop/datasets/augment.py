"""Training-set augmentation by random shifts: a fresh copy of the training images per epoch.

EBP is an online method: once the posterior fits every training image, its update vanishes
(docs/results.md, "Deployable binary networks"). Shifting each image by a few pixels, anew each
epoch, keeps showing it images it has not fitted yet. Only the training images are shifted;
validation and test images never are.

The shifts of epoch e are drawn from a generator seeded by (seed, e) alone, so a run resumed in
the middle of an epoch trains on exactly the images an unbroken run would.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["MAX_SHIFT", "check_max_shift", "epoch_shifts", "shift_images"]

#: Largest shift accepted, in pixels (a digit of MNIST sits in the middle 20×20 of 28×28).
MAX_SHIFT = 8

# Stream tag of the shift generator, so it never coincides with a run's other seeded draws.
_SHIFT_STREAM = 0x5_41F7


def check_max_shift(value: object) -> int:
    """``value`` as a shift in pixels, 0 ≤ value ≤ :data:`MAX_SHIFT` (else ValueError)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"augment_shift must be a whole number of pixels, got {value!r}")
    if not 0 <= value <= MAX_SHIFT:
        raise ValueError(
            f"augment_shift must be between 0 (off) and {MAX_SHIFT} pixels, got {value}"
        )
    return int(value)


def epoch_shifts(n: int, max_shift: int, seed: int, epoch: int) -> np.ndarray:
    """Per-image offsets of one epoch, uniform integers in [−max_shift, max_shift].

    Parameters
    ----------
    n : number of images; max_shift : pixels; seed : the run's seed; epoch : counts from 1.

    Returns
    -------
    (n, 2) int64 array of (rows down, columns right); the same for the same arguments.
    """
    rng = np.random.default_rng([_SHIFT_STREAM, int(seed), int(epoch)])
    return rng.integers(-max_shift, max_shift + 1, size=(n, 2))


def shift_images(images: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Each image moved by its offset; pixels moved in from outside are 0.

    Parameters
    ----------
    images : (n, h, w) array, or (n, h, w, c) with channels last (moved together); any dtype.
    offsets : (n, 2) integers: rows down and columns right (negative: up, left).

    Returns
    -------
    array of ``images``' shape and dtype; ``out[i, y, x] = images[i, y − dy_i, x − dx_i]`` where
    that pixel exists, else 0.
    """
    if images.ndim not in (3, 4) or offsets.shape != (images.shape[0], 2):
        raise ValueError(
            f"shift_images needs (n, h, w[, c]) images and (n, 2) offsets, got {images.shape} "
            f"and {offsets.shape}"
        )
    h, w = images.shape[1:3]
    out = np.zeros_like(images)
    # one slice assignment per distinct offset (at most (2·MAX_SHIFT + 1)² groups)
    pairs, group = np.unique(offsets, axis=0, return_inverse=True)
    group = group.reshape(-1)
    for g, (dy, dx) in enumerate(pairs):
        idx = np.flatnonzero(group == g)
        dy, dx = int(dy), int(dx)
        if abs(dy) >= h or abs(dx) >= w:
            continue  # moved out entirely: all zeros
        src_y, dst_y = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
        src_x, dst_x = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
        out[idx, dst_y, dst_x] = images[idx, src_y, src_x]
    return out
