"""Compiled (numba) kernels of the training step: optional, the NumPy core stays the definition.

:func:`run_minibatches_fused` is a drop-in for :func:`ebprop.train.run_minibatches_inplace`
(plus ``n_jobs``) that runs one fused pass over each layer per minibatch; see
docs/performance.md for what it does and the measurements that justify it. Importing this package
does not import numba; :func:`available` says whether the kernels can run here, and
:func:`unavailable_reason` why not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .system import unavailable_reason

if TYPE_CHECKING:  # pragma: no cover
    from .engine import refresh_moments, run_minibatches_fused, supports

__all__ = [
    "available", "refresh_moments", "run_minibatches_fused", "supports", "unavailable_reason",
]  # fmt: skip


def available() -> bool:
    """True when the fused kernels can run here: numba is installed and NumPy's bundled OpenBLAS,
    which they call, was found (:func:`unavailable_reason` says which is missing)."""
    return unavailable_reason() is None


def __getattr__(name: str):
    if name in ("run_minibatches_fused", "supports", "refresh_moments"):
        from . import engine  # imports numba; compiles lazily on first call

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
