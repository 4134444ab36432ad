"""Named banks of fixed 2-D filters, applied to a whole stack of images at once.

Every kernel is normalised so that on images scaled to ``[0, 1]`` its response lies in
``[-1, 1]`` (zero-sum "signed" kernels: divided by half their L1 norm, the largest possible
response) or in ``[0, 1]`` (the non-negative Gaussian: weights sum to 1). Responses are thus on
the pixels' scale before the final scaling (see :mod:`ebprop.datasets.transforms`).

Kernels are applied by correlation (``scipy.ndimage.correlate``, not convolution) with zero
padding, so ``sobel_x`` is positive where intensity increases to the right (columns) and
``sobel_y`` where it increases downwards (rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = [
    "DEFAULT_FILTERS",
    "FILTER_BANKS",
    "Kernel",
    "apply_kernel",
    "avg_pool",
    "filter_width",
    "parse_filters",
]


@dataclass(frozen=True)
class Kernel:
    """One fixed 2-D filter.

    Attributes
    ----------
    name : str
        E.g. ``"sobel_x"``.
    weights : numpy.ndarray
        float64, shape (k, k), already normalised (see the module docstring).
    signed : bool
        True for zero-sum kernels with responses in [-1, 1]; False for the non-negative Gaussian
        (responses in [0, 1], like pixels).
    """

    name: str
    weights: np.ndarray
    signed: bool


def _signed(name: str, weights: np.ndarray) -> Kernel:
    w = np.asarray(weights, dtype=np.float64)
    w = w - w.mean()  # exactly zero-sum: flat regions give 0
    return Kernel(name, w / (np.abs(w).sum() / 2.0), signed=True)


def _gauss(size: int = 5, sigma: float = 1.0) -> Kernel:
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return Kernel("gauss", g / g.sum(), signed=False)


def _gabor(theta_deg: int, size: int = 5, sigma: float = 1.2, wavelength: float = 4.0) -> Kernel:
    # Even (cosine) Gabor; theta is the direction of the carrier wave, so theta=0 varies along
    # columns and responds to vertical strokes about wavelength/2 = 2 pixels wide.
    r = np.arange(size) - (size - 1) / 2
    y, x = np.meshgrid(r, r, indexing="ij")
    t = np.deg2rad(theta_deg)
    envelope = np.exp(-(x**2 + y**2) / (2 * sigma**2))
    carrier = np.cos(2 * np.pi * (x * np.cos(t) + y * np.sin(t)) / wavelength)
    return _signed(f"gabor_{theta_deg}", envelope * carrier)


_SOBEL = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_PREWITT = np.array([[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]])
_LAPLACE = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])

#: Filter banks by short name (usable as ``--filters NAME[,NAME...]``).
FILTER_BANKS: dict[str, tuple[Kernel, ...]] = {
    "gauss": (_gauss(),),
    "sobel": (_signed("sobel_x", _SOBEL), _signed("sobel_y", _SOBEL.T)),
    "prewitt": (_signed("prewitt_x", _PREWITT), _signed("prewitt_y", _PREWITT.T)),
    "laplace": (_signed("laplace", _LAPLACE),),
    "gabor": tuple(_gabor(t) for t in (0, 45, 90, 135)),
}

#: The bank used by ``filters="default"``: x and y Sobel gradients (see docs/datasets.md).
DEFAULT_FILTERS: tuple[str, ...] = ("sobel",)

_ALIASES = {"default": DEFAULT_FILTERS, "all": tuple(FILTER_BANKS), "none": ()}


def parse_filters(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """Normalise a filter specification into a tuple of bank names.

    Parameters
    ----------
    spec : str, sequence of str or None
        ``None``, ``""`` or ``"none"`` for no filters; ``"default"``; ``"all"``; a bank name;
        a comma-separated list (``"sobel,laplace"``); or a sequence of these.

    Returns
    -------
    tuple of str
        Bank names from :data:`FILTER_BANKS`, in the order given, without repeats.

    Raises
    ------
    ValueError
        If a name is not a bank or an alias.
    """
    if spec is None:
        return ()
    items = [spec] if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"filter names must be strings, got {item!r}")
        for part in (p.strip().lower() for p in item.split(",")):
            if not part:
                continue
            if part in _ALIASES:
                names.extend(_ALIASES[part])
            elif part in FILTER_BANKS:
                names.append(part)
            else:
                known = ", ".join([*FILTER_BANKS, *_ALIASES])
                raise ValueError(f"unknown filter bank {part!r}; choose from: {known}")
    return tuple(dict.fromkeys(names))


def filter_width(banks: Sequence[str], image_shape: tuple[int, int], pool: int = 1) -> int:
    """Number of features the banks add for images of ``image_shape`` pooled by ``pool``."""
    h, w = image_shape
    n_kernels = sum(len(FILTER_BANKS[b]) for b in banks)
    return n_kernels * (-(-h // pool)) * (-(-w // pool))


def apply_kernel(images: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Correlate every image of a stack with one 2-D kernel (zero padding).

    Parameters
    ----------
    images : numpy.ndarray
        float array, shape (n, h, w).
    weights : numpy.ndarray
        shape (k, k).

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as ``images``.
    """
    kernel = np.asarray(weights, dtype=images.dtype)[None]  # (1, k, k): no mixing across images
    return ndimage.correlate(images, kernel, mode="constant", cval=0.0)


def avg_pool(maps: np.ndarray, pool: int) -> np.ndarray:
    """Average-pool a stack of maps over non-overlapping ``pool x pool`` blocks.

    Maps whose side is not a multiple of ``pool`` are zero-padded at the bottom and right (zero is
    the background of MNIST-like images).

    Parameters
    ----------
    maps : numpy.ndarray
        shape (n, h, w).
    pool : int
        Block side, >= 1.

    Returns
    -------
    numpy.ndarray
        shape (n, ceil(h / pool), ceil(w / pool)), same dtype.
    """
    if pool == 1:
        return maps
    n, h, w = maps.shape
    hp, wp = -(-h // pool), -(-w // pool)
    if (hp * pool, wp * pool) != (h, w):
        maps = np.pad(maps, ((0, 0), (0, hp * pool - h), (0, wp * pool - w)))
    # pool**2 strided additions: several times faster than reshape(...).mean(axis=(2, 4))
    total = np.zeros((n, hp, wp), dtype=maps.dtype)
    for i in range(pool):
        for j in range(pool):
            total += maps[:, i::pool, j::pool]
    return total / maps.dtype.type(pool * pool)
