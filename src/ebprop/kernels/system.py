"""What the compiled kernels need, found without compiling anything: numba, NumPy's OpenBLAS, and
the on-disk cache their machine code lives in.

The fused loop calls NumPy's own OpenBLAS (``cblas_?gemm`` of scipy-openblas64, which NumPy's Linux
wheels bundle) from compiled code (:mod:`._blas`); without it the fused loop would not run, so the
NumPy loop does, about 3.4× slower. :func:`unavailable_reason` says which of the two is missing.

numba keys each cached kernel on its own source file only, so a kernel that inlines code from
another file (``_fused.py`` takes its vectors from ``_simd.py``, its tanh from ``_vecmath.py``)
would keep stale machine code after that other file changed. The kernels are therefore cached in a
folder named after a hash of all kernel sources (:func:`cache_folder`): an edited kernel source
gives a new folder, so nothing compiled from the old sources is ever loaded again, and folders not
used for :data:`STALE_DAYS` days are deleted. Importing this module imports neither numba nor
llvmlite.

The parallel regions of two threads run on numba's OpenMP layer, whose idle threads spin
:data:`OMP_SPINCOUNT` times before they sleep (:func:`configure_threads`, decision 12 in
docs/performance.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import hashlib
import importlib.util
import os
import shutil
import time
from pathlib import Path

from .._version import __version__

__all__ = [
    "OMP_SPINCOUNT", "STALE_DAYS", "cache_folder", "configure_threads", "enter_kernel_cache",
    "find_numpy_cblas", "leave_kernel_cache", "prune_cache_folders", "source_hash",
    "system_report", "threading_layer", "unavailable_reason", "vector_name",
]  # fmt: skip

#: Busy-wait rounds of an idle OpenMP thread before it sleeps (libgomp's ``GOMP_SPINCOUNT``; its
#: own default is 300,000). A two-thread minibatch of 784-800-800-10 passes several parallel
#: regions in about a millisecond, so a thread that went to sleep between them (workqueue, or
#: OpenMP's passive policy) costs more than it saves: two threads ran at 0.84–0.93× of one on
#: workqueue and 1.61–1.79× here, on an idle 2-vCPU Xeon; libgomp's default spin made two
#: threads 0.35× of one with the other core busy, this bound 0.63× (which ``--jobs auto``
#: measures and avoids).
OMP_SPINCOUNT = "10000"

#: A kernel cache folder of other sources is deleted after this many days without use.
STALE_DAYS = 7
_PREFIX = "ebprop-kernels-"
_PACKAGE = Path(__file__).resolve().parent
#: Sources whose code or constants the compiled kernels contain: the compiled kernel modules
#: (``kernels/_*.py``; the public modules beside them are plain Python, and editing them must
#: not cost a recompile) and the core constants they read (``PARAMETER_BOUND``).
_SOURCES = ("kernels/_*.py", "core/update.py")


def find_numpy_cblas() -> tuple[str, int, int] | None:
    """NumPy's bundled OpenBLAS: (library path, ``cblas_sgemm`` address, ``cblas_dgemm``
    address), or None when NumPy was not built on scipy-openblas64 (e.g. not a Linux pip wheel)."""
    import numpy as np

    libdir = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libdir, "libscipy_openblas64_*.so"))):
        try:
            lib = ctypes.CDLL(path)
            s, d = lib.scipy_cblas_sgemm64_, lib.scipy_cblas_dgemm64_
        except (OSError, AttributeError):
            continue
        addr = (ctypes.cast(f, ctypes.c_void_p).value for f in (s, d))
        return (os.path.realpath(path), *addr)
    return None


@functools.cache
def unavailable_reason() -> str | None:
    """None when the fused kernels can run here, else why not (one line, with the fix)."""
    if importlib.util.find_spec("numba") is None:
        return "numba is not installed (pip install numba)"
    if find_numpy_cblas() is None:
        return (
            "NumPy's bundled OpenBLAS (scipy-openblas64, shipped in NumPy's Linux pip wheels) "
            "was not found; install NumPy from a pip wheel"
        )
    return None


def source_hash(root: Path = _PACKAGE.parent) -> str:
    """SHA-256 (16 hex digits) of every kernel source under ``root`` (the ``ebprop`` package),
    names and contents, in a fixed order."""
    digest = hashlib.sha256()
    for pattern in _SOURCES:
        for path in sorted(root.glob(pattern)):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _base_folder(configured: str | None) -> Path:
    # NUMBA_CACHE_DIR if the user set one, else the user-wide cache folder numba itself uses
    # for read-only installs (e.g. ~/.cache/numba)
    if configured:
        return Path(configured)
    from numba.misc.appdirs import AppDirs

    return Path(AppDirs(appname="numba", appauthor=False).user_cache_dir)


_state: dict = {"depth": 0, "previous": None, "folder": None}


def cache_folder() -> Path:
    """The folder the kernels are cached in: ``<NUMBA_CACHE_DIR or numba's user cache
    folder>/ebprop-kernels-<source hash>``. Imports numba (its configuration)."""
    if _state["folder"] is None:
        import numba

        base = _base_folder(numba.config.CACHE_DIR if _state["depth"] == 0 else _state["previous"])
        _state["folder"] = base / (_PREFIX + source_hash())
    return _state["folder"]


def prune_cache_folders(folder: Path) -> None:
    """Mark ``folder`` used now; delete sibling kernel caches unused for STALE_DAYS days."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "last-used").touch()
        limit = time.time() - STALE_DAYS * 86400
        for other in folder.parent.glob(_PREFIX + "*"):
            stamp = other / "last-used"
            used = stamp.stat().st_mtime if stamp.exists() else other.stat().st_mtime
            if other != folder and used < limit:
                shutil.rmtree(other, ignore_errors=True)
    except OSError:  # a read-only cache location: numba then warns and compiles in memory
        pass


def enter_kernel_cache() -> None:
    """Point numba's cache at :func:`cache_folder` while a kernel module is being defined.

    Each kernel module calls this before its first ``cache=True`` decorator and
    :func:`leave_kernel_cache` after its last one (numba fixes a function's cache folder when it
    is decorated), so other libraries' numba functions keep their own cache folder.
    """
    import numba

    if _state["depth"] == 0:
        _state["previous"] = numba.config.CACHE_DIR
        folder = cache_folder()
        if _state.get("pruned") != folder:
            prune_cache_folders(folder)
            _state["pruned"] = folder
        numba.config.CACHE_DIR = str(folder)
    _state["depth"] += 1


def leave_kernel_cache() -> None:
    """Undo :func:`enter_kernel_cache` (the outermost call restores numba's setting)."""
    import numba

    _state["depth"] -= 1
    if _state["depth"] == 0:
        numba.config.CACHE_DIR = _state["previous"]


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


def configure_threads() -> None:
    """Run the kernels' parallel regions on numba's OpenMP layer with a bounded spin.

    Call before numba launches its first parallel region (libgomp reads ``GOMP_SPINCOUNT`` when it
    loads). Sets nothing the user chose: with ``NUMBA_THREADING_LAYER`` set, numba's choice stands;
    with ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` set, libgomp's. Without libgomp numba falls back
    to its workqueue layer (correct, and two threads then rarely pay).
    """
    if "NUMBA_THREADING_LAYER" in os.environ:
        return
    if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = OMP_SPINCOUNT
    import numba

    numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]
    numba.config.THREADING_LAYER = "default"


def threading_layer() -> str:
    """The layer two-thread training runs on here, found without loading it: the user's
    ``NUMBA_THREADING_LAYER``, else ``"omp"`` where libgomp is installed, else ``"workqueue"``."""
    chosen = os.environ.get("NUMBA_THREADING_LAYER")
    if chosen:
        return chosen
    return "omp" if ctypes.util.find_library("gomp") else "workqueue"


def system_report() -> dict:
    """What the compiled kernels find on this machine (``ebprop info --system``).

    Returns
    -------
    dict with ``versions`` (package → version or None when not installed), ``blas`` (the library
    the kernels call, or None), ``engine`` (``"compiled"`` or ``"numpy"``), ``reason`` (why the
    NumPy loop runs, or None), ``vector_bytes`` and ``float32_lanes`` (the kernels' vector width,
    None without numba), ``cpu_features`` (``NUMBA_CPU_FEATURES`` when set), ``cache_folder``,
    ``cpus`` (the CPUs this process may run on), ``threading_layer`` (:func:`threading_layer`)
    and ``omp_spincount`` (``GOMP_SPINCOUNT`` as the kernels will set or find it).
    """
    import platform

    versions = {"python": platform.python_version(), "ebprop": __version__}
    for package in ("numpy", "scipy", "numba", "llvmlite", "threadpoolctl", "torch"):
        versions[package] = _version(package)
    found = find_numpy_cblas()
    reason = unavailable_reason()
    report = {
        "versions": versions,
        "blas": found[0] if found is not None else None,
        "engine": "compiled" if reason is None else "numpy",
        "reason": reason,
        "vector_bytes": None,
        "float32_lanes": None,
        "cpu_features": os.environ.get("NUMBA_CPU_FEATURES"),
        "cache_folder": None,
        "cpus": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "threading_layer": threading_layer(),
        "omp_spincount": os.environ.get("GOMP_SPINCOUNT")
        or (
            None
            if os.environ.keys() & {"NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY"}
            else OMP_SPINCOUNT
        ),
    }
    if importlib.util.find_spec("numba") is not None:
        from ._simd import VECTOR_BYTES

        report.update(
            vector_bytes=VECTOR_BYTES, float32_lanes=VECTOR_BYTES // 4,
            cache_folder=str(cache_folder()),
        )  # fmt: skip
    return report


def vector_name(vector_bytes: int) -> str:
    """E.g. ``"512-bit vectors (AVX-512, 16 float32 lanes)"`` for ``vector_bytes`` = 64."""
    isa = "AVX-512, " if vector_bytes == 64 else ""
    return f"{vector_bytes * 8}-bit vectors ({isa}{vector_bytes // 4} float32 lanes)"
