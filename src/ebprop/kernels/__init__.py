"""Compiled (numba) kernels of the training step: optional, the NumPy core stays the definition.

:func:`run_minibatches_fused` is a drop-in for :func:`ebprop.trainer.run_minibatches_inplace`
(plus ``n_jobs``; the reinforcement factors as numbers, ``rho``, not the schedule) that runs one
fused pass over each layer per minibatch; see
docs/performance.md for what it does and the measurements that justify it. Importing this package
does not import numba; :func:`available` says whether the kernels can run here, and
:func:`unavailable_reason` why not.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from .system import unavailable_reason
from .threads import ThreadChooser, max_threads

if TYPE_CHECKING:  # pragma: no cover
    from .fused import (
        conv_layer_forward,
        refresh_moments,
        run_minibatches_fused,
        supports,
        unimplemented_options,
    )

__all__ = [
    "ThreadChooser", "available", "conv_layer_forward", "max_threads", "refresh_moments",
    "run_minibatches_fused", "supports", "unavailable_reason", "unimplemented_options",
    "vector_bits",
]  # fmt: skip


def available() -> bool:
    """True when the fused kernels can run here: numba is installed and NumPy's bundled OpenBLAS,
    which they call, was found (:func:`unavailable_reason` says which is missing)."""
    return unavailable_reason() is None


def vector_bits() -> int | None:
    """Bits per explicit vector the kernels compile for (512 where numba targets AVX-512F, else
    256), or None when numba is not installed. Imports numba (once) when it is."""
    if importlib.util.find_spec("numba") is None:
        return None
    from ._simd import VECTOR_BYTES

    return 8 * VECTOR_BYTES


def __getattr__(name: str):
    if name in (
        "run_minibatches_fused", "supports", "refresh_moments", "conv_layer_forward",
        "unimplemented_options",
    ):  # fmt: skip
        from . import fused  # imports numba; compiles lazily on first call

        return getattr(fused, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
