"""benchmarks/epoch_average.py: the epoch means it reads EBP-D from, and a run it leaves alone."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from click.testing import CliRunner

from ebprop.cli import main

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from epoch_average import EpochMean  # noqa: E402


def test_epoch_mean_is_the_majority_sign_and_the_mean_threshold():
    H = [np.array([[2.0, -0.1], [0.0, 0.3]], np.float32)]
    b = [np.array([1.0, -3.0], np.float32)]
    net = SimpleNamespace(H=H, b=b)
    mean = EpochMean(net)
    mean.add(10, 0)
    H[0][...] = [[-0.5, -0.2], [0.0, -0.1]]  # trained in place, as the trainer does
    b[0][...] = [2.0, 1.0]
    mean.add(20, 0)
    W, bias = mean.signs_and_biases()
    m = (np.tanh([[2.0, -0.1], [0.0, 0.3]]) + np.tanh([[-0.5, -0.2], [0.0, -0.1]])) / 2
    np.testing.assert_array_equal(W[0], np.where(m >= 0, 1.0, -1.0))  # tanh 0 = 0 -> +1
    assert W[0].dtype == np.float32 and W[0][1, 0] == 1.0 and W[0][1, 1] == 1.0
    np.testing.assert_allclose(bias[0], [1.5, -1.0])
    mean.reset()
    assert mean.count == 0 and not mean.M[0].any() and not mean.b[0].any()
    for h in (10.0, -1.0, -1.0):  # a vote of the means: ΣH = 8 > 0, but Σ tanh H = −0.52 < 0
        H[0][...] = h
        mean.add(0, 0)
    assert (mean.signs_and_biases()[0][0] == -1.0).all()
    mean.reset()
    assert mean.count == 0 and not mean.M[0].any() and not mean.b[0].any()


def test_it_continues_a_conv_run_without_writing_to_it(tmp_path):
    run = tmp_path / "run"
    res = CliRunner().invoke(
        main, ["train", "--dataset", "digits", "--arch", "4C3-MP2-16", "--epochs", "2",
               "--init-variance", "30", "--reinforcement", "hidden=1.001,start=1",
               "--augment-shift", "1", "--validation", "300", "--out", str(run)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.iterdir()}
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "epoch_average.py"), str(run), "--dataset",
         "digits", "--validation", "300", "--epochs", "2"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [r.split("|")[1].strip() for r in rows] == ["3", "4"]
    values = [float(x) for r in rows for x in r.strip("| ").split(" | ")[1:]]
    assert len(values) == 8 and all(0.0 <= v < 80.0 for v in values)  # chance: 90 %
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.iterdir()}
    assert after == before
