"""Shared test configuration.

Real-MNIST tests run only when ``EBPROP_DATA`` names a folder. When the variable is unset and the
checkout sits beside ``shared/data`` (as on the developers' machines), it points there.

``EBPROP_CI=1`` (set by ``.ci/run``): a test that would skip because a tool or a dataset is
missing fails instead, naming what is missing. The only skips left are those of
:data:`CI_ALLOWED_SKIPS` (listed in docs/testing.md): what no installation can change on the
machine at hand. MNIST is required where ``EBPROP_DATA`` is set (it must then hold MNIST); a
clone with no ``EBPROP_DATA`` skips the MNIST tests with that reason, which ``.ci/run`` prints.
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


CI = os.environ.get("EBPROP_CI") == "1"
#: Skip reasons (their beginnings) that stay skips under EBPROP_CI=1: no tool or dataset to install.
CI_ALLOWED_SKIPS = (
    "EBPROP_DATA is not set",  # a clone away from shared/: no MNIST to require (.ci/run says so)
    "needs two CPUs",  # the thread choice on a one-CPU machine
    # scikit-learn's estimator checks for input types ebprop neither depends on nor claims
    "SCIPY_ARRAY_API is not set",  # array-API inputs (an opt-in of SciPy's)
    "pandas is not installed",  # pandas inputs
)

if os.environ.get("EBPROP_DATA"):
    requires_mnist = pytest.mark.skipif(
        mnist_dir() is None,
        reason=f"EBPROP_DATA={os.environ['EBPROP_DATA']} does not hold MNIST "
        "(train-images-idx3-ubyte.gz in it or in its mnist/)",
    )
else:
    requires_mnist = pytest.mark.skipif(
        True, reason="EBPROP_DATA is not set: the MNIST tests need the folder holding MNIST"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under EBPROP_CI=1 a skip for a missing tool or dataset is a failure naming it."""
    outcome = yield
    report = outcome.get_result()
    if not (CI and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    if reason.startswith(CI_ALLOWED_SKIPS):
        return
    report.outcome = "failed"
    report.longrepr = f"EBPROP_CI=1 and this test would skip, so it fails: {reason}"


@pytest.fixture
def old_update(monkeypatch):
    """Training without the overshoot control (γ = 1 always, the update before issue 32), so that
    the divergence paths, the last resort behind it, can still be driven by ordinary settings.
    Acts on the NumPy loop, which the small (digits) runs of the tests take."""
    import ebprop.core.step

    monkeypatch.setattr(ebprop.core.step, "overshoot_gain", lambda *args: 1.0)
