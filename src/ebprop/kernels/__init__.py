"""Compiled (numba) kernels of the training step: optional, the NumPy core stays the definition.

:func:`run_minibatches_fused` is a drop-in for :func:`ebprop.trainer.run_minibatches_inplace`
(plus ``n_jobs``) that runs one fused pass over each layer per minibatch; see
docs/performance.md for what it does and the measurements that justify it. Importing this package
does not import numba; :func:`available` says whether the kernels can be used.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .fused import refresh_moments, run_minibatches_fused, supports

__all__ = [
    "available",
    "refresh_moments",
    "run_minibatches_fused",
    "supports",
    "vector_bits",
]


def available() -> bool:
    """True when numba (and so the fused kernels) can be imported."""
    return importlib.util.find_spec("numba") is not None


def vector_bits() -> int | None:
    """Bits per explicit vector the kernels compile for (512 where numba targets AVX-512F, else
    256), or None when numba is not installed. Imports numba (once) when it is."""
    if not available():
        return None
    from ._simd import VECTOR_BYTES

    return 8 * VECTOR_BYTES


def __getattr__(name: str):
    if name in ("run_minibatches_fused", "supports", "refresh_moments"):
        from . import fused  # imports numba; compiles lazily on first call

        return getattr(fused, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
