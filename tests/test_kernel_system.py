"""The engine's report about itself: what the compiled kernels need, and their on-disk cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ebprop import kernels
from ebprop.cli import main
from ebprop.kernels import system

SRC = Path(__file__).resolve().parents[1] / "src"


def test_available_needs_numba_and_numpys_openblas(monkeypatch):
    monkeypatch.setattr(system, "find_numpy_cblas", lambda: None)
    system.unavailable_reason.cache_clear()
    try:
        assert not kernels.available()
        assert "OpenBLAS" in kernels.unavailable_reason()
    finally:
        monkeypatch.undo()
        system.unavailable_reason.cache_clear()
    real_find_spec = system.importlib.util.find_spec
    monkeypatch.setattr(
        system.importlib.util, "find_spec", lambda n: None if n == "numba" else real_find_spec(n)
    )
    try:
        assert not kernels.available()
        assert kernels.unavailable_reason().startswith("numba is not installed")
    finally:
        monkeypatch.undo()
        system.unavailable_reason.cache_clear()


def test_the_blas_found_is_numpys_own_library():
    pytest.importorskip("numba")
    found = system.find_numpy_cblas()
    assert found is not None and "scipy_openblas64" in Path(found[0]).name
    import numpy as np

    assert (
        Path(found[0]).parent.resolve()
        == (Path(np.__file__).parent.parent / "numpy.libs").resolve()
    )


def test_source_hash_follows_every_kernel_source(tmp_path):
    root = tmp_path / "ebprop"
    shutil.copytree(SRC / "ebprop", root)
    assert system.source_hash(root) == system.source_hash()
    simd = root / "kernels" / "_simd.py"
    simd.write_text(simd.read_text() + "\n# edited\n")
    edited = system.source_hash(root)
    assert edited != system.source_hash()
    bound = root / "core" / "update.py"  # PARAMETER_BOUND is compiled into the kernels
    bound.write_text(bound.read_text() + "\n# edited\n")
    assert system.source_hash(root) != edited


_PROBE = """
import json, numpy as np
from ebprop.kernels import _fused as K
from ebprop.kernels.system import cache_folder
H = np.linspace(-1, 1, 12).reshape(3, 4); M = np.empty_like(H); M2 = np.empty_like(H)
K.moments(H, M, M2, True, True)
s = K.moments.stats
print(json.dumps([sum(s.cache_hits.values()), sum(s.cache_misses.values()), str(cache_folder())]))
"""


def test_editing_an_inlined_kernel_source_recompiles_its_callers(tmp_path):
    # _fused.moments inlines _vecmath's tanh: numba alone keys the cache on _fused.py only
    pytest.importorskip("numba")
    src = tmp_path / "src"
    shutil.copytree(SRC / "ebprop", src / "ebprop", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(src), "NUMBA_CACHE_DIR": str(tmp_path / "cache")}

    def probe():
        out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
        return json.loads(out.strip().splitlines()[-1])

    hits, misses, first = probe()
    assert (hits, misses) == (0, 1) and Path(first).parent == tmp_path / "cache"
    assert probe()[:2] == [1, 0]  # loaded from the cache
    vecmath = src / "ebprop" / "kernels" / "_vecmath.py"
    vecmath.write_text(vecmath.read_text() + "\n# edited\n")
    hits, misses, second = probe()
    assert (hits, misses) == (0, 1) and second != first  # compiled afresh, in a new folder


def test_stale_cache_folders_are_deleted_after_a_week(tmp_path):
    ours = tmp_path / "ebprop-kernels-aaaa"
    old, recent, foreign = (tmp_path / n for n in ("ebprop-kernels-bbbb", "ebprop-kernels-cccc",
                                                   "someone-else"))  # fmt: skip
    for folder in (old, recent, foreign):
        folder.mkdir()
        (folder / "last-used").touch()
    week = system.STALE_DAYS * 86400
    for folder in (old, foreign):
        t = os.path.getmtime(folder / "last-used") - week - 60
        os.utime(folder / "last-used", (t, t))
    system.prune_cache_folders(ours)
    assert ours.is_dir() and recent.is_dir() and foreign.is_dir() and not old.exists()


def test_info_system_prints_versions_blas_width_and_cache():
    pytest.importorskip("numba")
    out = CliRunner().invoke(main, ["info", "--system"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].startswith("versions: python ") and "numba " in lines[0]
    report = system.system_report()
    assert f"BLAS for the compiled loop: {report['blas']}" in lines
    assert any(line.startswith("vector width: ") for line in lines)
    assert f"kernel cache: {system.cache_folder()}" in lines
    data = json.loads(CliRunner().invoke(main, ["info", "--system", "--json"]).output)
    assert data["vector_bytes"] in (32, 64) and data["cache_folder"] == str(system.cache_folder())


def test_info_needs_a_model_or_system(tmp_path):
    out = CliRunner().invoke(main, ["info"])
    assert out.exit_code == 2 and "--system" in out.output
    out = CliRunner().invoke(main, ["info", str(tmp_path), "--system"])
    assert out.exit_code == 2 and "no MODEL" in out.output


_THREADS_PROBE = """
import json, os, numba, numpy as np
from ebprop import EBPClassifier
X = np.random.default_rng(0).random((200, 64)); y = np.arange(200) % 3
EBPClassifier(hidden_layer_sizes=(600,), max_iter=1, n_jobs=2, dtype="float32",
              random_state=0).fit(X, y)
print(json.dumps([numba.threading_layer(), os.environ.get("GOMP_SPINCOUNT")]))
"""


@pytest.mark.parametrize(
    "env, spin",
    [
        ({}, "10000"),
        ({"GOMP_SPINCOUNT": "77"}, "77"),
        ({"NUMBA_THREADING_LAYER": "workqueue"}, None),
    ],
)
def test_two_threads_run_on_openmp_with_a_bounded_spin_unless_the_user_chose(env, spin):
    # decision 12 of docs/performance.md: workqueue's sleeping threads made two threads slower
    # than one; without libgomp numba falls back to workqueue, which info --system says
    import ctypes.util

    pytest.importorskip("numba")
    ours = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER")
    clean = {k: v for k, v in os.environ.items() if k not in ours}
    out = subprocess.run([sys.executable, "-c", _THREADS_PROBE], env=clean | env,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    layer, found = json.loads(out.stdout.splitlines()[-1])
    default = "omp" if ctypes.util.find_library("gomp") else "workqueue"
    assert (layer, found) == (env.get("NUMBA_THREADING_LAYER", default), spin)
    report = subprocess.run(
        [sys.executable, "-m", "ebprop", "info", "--system", "--json"], env=clean | env,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    data = json.loads(report.stdout)
    assert (data["threading_layer"], data["omp_spincount"]) == (
        env.get("NUMBA_THREADING_LAYER", default),
        spin,
    )
