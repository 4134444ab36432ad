"""Where a result came from: the ebprop version, the git commit and the CPU's vector width.

Every run's ``summary.json`` and every model file's header carry :func:`provenance`, so a number
can be traced to the code that made it and re-run on a CPU that reproduces it: the compiled
kernels sum a dot product's lanes in an order set by the vector width, so results agree across
widths to round-off, not to the bit (docs/performance.md, "Reproducing a number").
"""

from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path
from typing import Any

from . import kernels
from ._version import __version__

__all__ = ["UNKNOWN", "git_commit", "provenance", "vector_bits"]

#: The commit recorded where none can be read (no git, not a checkout, git failing).
UNKNOWN = "unknown"
_PACKAGE = Path(__file__).resolve().parent
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")


def _git(package: Path, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(
            ["git", "-C", str(package), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):  # no git, or it hung
        return None


def git_commit(package: Path | None = None) -> str:
    """The commit of the checkout this package runs from, or :data:`UNKNOWN`.

    Parameters
    ----------
    package : Path, optional
        The package folder (default: this ebprop's). It counts as a checkout only when git
        tracks its ``_version.py``, so an installed copy inside someone else's repository is
        ``"unknown"``, not that repository's commit.

    Returns
    -------
    str
        The full hash, with ``"-dirty"`` appended when tracked files of the package differ from
        it; ``"unknown"`` without git or outside a checkout. Never raises.
    """
    return _git_commit(Path(package).resolve() if package is not None else _PACKAGE)


@functools.lru_cache(maxsize=8)
def _git_commit(package: Path) -> str:
    tracked = _git(package, "ls-files", "--error-unmatch", "--", "_version.py")
    if tracked is None or tracked.returncode != 0:
        return UNKNOWN
    head = _git(package, "rev-parse", "HEAD")
    sha = head.stdout.strip() if head is not None and head.returncode == 0 else ""
    if not _SHA.fullmatch(sha):
        return UNKNOWN
    diff = _git(package, "diff", "--quiet", "HEAD", "--", ".")
    return f"{sha}-dirty" if diff is not None and diff.returncode == 1 else sha


def vector_bits() -> int | None:
    """Bits per vector the compiled kernels use here (512 with AVX-512, else 256).

    None when numba is not installed (training then runs the NumPy loop).
    """
    return kernels.vector_bits()


def provenance() -> dict[str, Any]:
    """``{"ebprop_version", "git_commit", "vector_bits"}`` of this process (JSON-able)."""
    return {
        "ebprop_version": __version__,
        "git_commit": git_commit(),
        "vector_bits": vector_bits(),
    }
