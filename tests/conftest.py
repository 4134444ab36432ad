"""Shared test configuration.

Real-MNIST tests run only when ``EBPROP_DATA`` names a folder that holds MNIST. When the variable
is unset and the checkout sits beside ``shared/data`` (as on the developers' machines and in CI),
point it there.
"""

from __future__ import annotations

import os
from pathlib import Path

# One BLAS thread per process, for the suite and the subprocesses it starts: minibatch-sized
# products gain nothing from a second thread, and on a busy 2-core machine OpenBLAS's spinning
# threads made one MNIST epoch 5-20x slower (docs/performance.md).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

_BLAS_LIMIT = threadpool_limits(limits=1)  # in case NumPy was imported before this file

_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if "EBPROP_DATA" not in os.environ and (_SHARED / "mnist").is_dir():
    os.environ["EBPROP_DATA"] = str(_SHARED)


def mnist_dir() -> Path | None:
    """The folder holding MNIST's four files, or None when it is not available."""
    root = os.environ.get("EBPROP_DATA")
    if not root:
        return None
    for cand in (Path(root) / "mnist", Path(root)):
        if (cand / "train-images-idx3-ubyte.gz").is_file():
            return cand
    return None


requires_mnist = pytest.mark.skipif(mnist_dir() is None, reason="EBPROP_DATA does not hold MNIST")


@pytest.fixture
def old_update(monkeypatch):
    """Training without the overshoot control (γ = 1 always, the update before issue 32), so that
    the divergence paths, the last resort behind it, can still be driven by ordinary settings.
    Acts on the NumPy loop, which the small (digits) runs of the tests take."""
    import ebprop.core.step

    monkeypatch.setattr(ebprop.core.step, "overshoot_gain", lambda *args: 1.0)
