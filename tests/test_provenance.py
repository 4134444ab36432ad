"""Provenance: every summary.json and model header names the version, commit and vector width."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import ebprop
from ebprop import provenance as prov
from ebprop.persist import load_model
from ebprop.runs import TrainOptions, train_run

PACKAGE = Path(ebprop.__file__).resolve().parent


def _expected_bits() -> int | None:
    # independent of the kernels: numba's target features, read the way numba reads them
    numba = pytest.importorskip("numba")
    import llvmlite.binding as ll

    features = numba.config.CPU_FEATURES or ll.get_host_cpu_features().flatten()
    return 512 if "+avx512f" in features.split(",") else 256


def _expected_commit() -> str:
    git = shutil.which("git")
    top = (
        subprocess.run(
            [git, "-C", str(PACKAGE), "ls-files", "--error-unmatch", "_version.py"],
            capture_output=True,
            check=False,
        )
        if git
        else None
    )
    if top is None or top.returncode != 0:
        return prov.UNKNOWN
    sha = subprocess.run(
        [git, "-C", str(PACKAGE), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    dirty = subprocess.run([git, "-C", str(PACKAGE), "diff", "--quiet", "HEAD", "--", "."])
    return sha + ("-dirty" if dirty.returncode else "")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("prov") / "run"
    summary = train_run(TrainOptions(hidden=(8,), epochs=1, seed=1), out, make_plots=False)
    return out, summary


def test_summary_json_carries_version_commit_and_vector_width(run):
    out, summary = run
    stored = json.loads((out / "summary.json").read_text())
    assert stored["ebprop_version"] == ebprop.__version__
    assert stored["git_commit"] == _expected_commit()
    assert stored["vector_bits"] == _expected_bits()
    assert {k: summary[k] for k in ("git_commit", "vector_bits")} == {
        k: stored[k] for k in ("git_commit", "vector_bits")
    }


def test_model_header_carries_them_and_files_without_them_load(run, tmp_path):
    out, _ = run
    meta = load_model(out / "model.npz").metadata
    assert meta["ebprop_version"] == ebprop.__version__
    assert meta["git_commit"] == _expected_commit()
    assert meta["vector_bits"] == _expected_bits()
    # a file written before the fields existed: same arrays, header without them
    import numpy as np

    from ebprop.fileio import decode_header, encode_header

    with np.load(out / "model.npz") as z:
        arrays = {k: z[k] for k in z.files}
    header = decode_header(arrays.pop("header"), "model")
    del header["git_commit"], header["vector_bits"]
    np.savez(tmp_path / "old.npz", header=encode_header(header), **arrays)
    old = load_model(tmp_path / "old.npz")
    assert "git_commit" not in old.metadata
    np.testing.assert_array_equal(
        old.estimator.coefs_[0], load_model(out / "model.npz").estimator.coefs_[0]
    )


def test_commit_is_unknown_outside_a_checkout_and_without_git(tmp_path, monkeypatch):
    copy = tmp_path / "ebprop"
    copy.mkdir()
    (copy / "_version.py").write_text('__version__ = "0"\n')
    assert prov.git_commit(copy) == prov.UNKNOWN  # not a checkout
    monkeypatch.setenv("PATH", str(tmp_path / "no-such-bin"))
    prov._git_commit.cache_clear()
    assert prov.git_commit() == prov.UNKNOWN  # no git at all: no failure either
    prov._git_commit.cache_clear()


def test_commit_of_a_fresh_checkout_and_its_dirty_mark(tmp_path):
    git = shutil.which("git")
    if git is None:
        pytest.fail("git is needed to build a checkout for this test")
    pkg = tmp_path / "repo" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "_version.py").write_text('__version__ = "0"\n')
    env = ["-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([git, "init", "-q", str(tmp_path / "repo")], check=True)
    subprocess.run([git, "-C", str(pkg), "add", "."], check=True)
    subprocess.run([git, *env, "-C", str(pkg), "commit", "-qm", "x"], check=True)
    sha = subprocess.run(
        [git, "-C", str(pkg), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert prov.git_commit(pkg) == sha
    (pkg / "_version.py").write_text('__version__ = "1"\n')
    prov._git_commit.cache_clear()
    assert prov.git_commit(pkg) == sha + "-dirty"
    prov._git_commit.cache_clear()
    # an untracked package inside someone else's repository is not that repository's commit
    other = tmp_path / "repo" / "site" / "ebprop"
    other.mkdir(parents=True)
    (other / "_version.py").write_text('__version__ = "0"\n')
    assert prov.git_commit(other) == prov.UNKNOWN


def test_info_prints_the_provenance(run):
    from click.testing import CliRunner

    from ebprop.cli import main

    out, _ = run
    res = CliRunner().invoke(main, ["info", str(out / "model.npz")])
    assert res.exit_code == 0, res.output
    first = res.output.splitlines()[0]
    assert f"written by ebprop {ebprop.__version__}, commit {_expected_commit()[:12]}" in first
    assert f"{_expected_bits()}-bit vectors" in first
    as_json = CliRunner().invoke(main, ["info", str(out / "model.npz"), "--json"])
    doc = json.loads(as_json.output)
    assert (doc["git_commit"], doc["vector_bits"]) == (_expected_commit(), _expected_bits())
