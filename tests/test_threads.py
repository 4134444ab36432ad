"""``n_jobs="auto"``: the thread choice from measured speed, its fall back under a stalled thread,
and results that do not depend on what it chose."""

from __future__ import annotations

import numpy as np
import pytest

from ebprop.kernels import threads
from ebprop.kernels.threads import ThreadChooser


def _feed(chooser: ThreadChooser, seconds_per_batch: dict, spans: int) -> list[int]:
    """Run ``spans`` spans through the chooser with the given speeds; the threads it used."""
    used = []
    for _ in range(spans):
        t, batches = chooser.next_span()
        chooser.record(t, batches, batches * seconds_per_batch[t])
        used.append(t)
    return used


def test_measures_both_then_keeps_two_threads_only_when_they_pay():
    fast = ThreadChooser(2)
    used = _feed(fast, {1: 0.010, 2: 0.006}, 1 + 2 * threads.PROBE_PAIRS)
    assert used == [1] + [1, 2] * threads.PROBE_PAIRS  # a warm-up span, then the pairs
    assert fast.threads == 2 and fast.log == [("measured", 0.010, 0.006, 2)]
    # 1.05x faster is not worth the second core
    marginal = ThreadChooser(2)
    _feed(marginal, {1: 0.010, 2: 0.010 / 1.05}, 1 + 2 * threads.PROBE_PAIRS)
    assert marginal.threads == 1 and marginal.log[0][0] == "measured"


def test_a_far_slower_second_thread_ends_the_measuring_at_once():
    chooser = ThreadChooser(2)
    used = _feed(chooser, {1: 0.010, 2: 0.050}, 4)
    assert used == [1, 1, 2, 1]  # warm-up, one pair, then one thread
    assert chooser.threads == 1 and chooser.log == [("measured", 0.010, 0.050, 1)]


def test_one_cpu_never_probes():
    chooser = ThreadChooser(1)
    assert _feed(chooser, {1: 0.01, 2: 0.001}, 20) == [1] * 20 and chooser.log == []


def test_spans_last_about_span_seconds():
    chooser = ThreadChooser(2)
    _feed(chooser, {1: 0.001, 2: 0.0005}, 1 + 2 * threads.PROBE_PAIRS)
    assert chooser.next_span() == (2, round(threads.SPAN_SECONDS / 0.0005))


def test_stalls_fall_back_to_one_thread_and_rechecks_bring_two_back():
    chooser = ThreadChooser(2)
    _feed(chooser, {1: 0.010, 2: 0.005}, 1 + 2 * threads.PROBE_PAIRS)
    assert chooser.threads == 2
    _feed(chooser, {1: 0.010, 2: 0.012}, threads.STALLS_TO_FALL_BACK)  # a thread kept waiting
    assert chooser.threads == 1 and chooser.log[-1][0] == "stalled"
    assert chooser._interval == 2 * threads.RECHECK_SECONDS  # no fall back every few seconds
    # one thread until the re-check, which finds two threads fast again
    # (the re-check after a fall back waits twice RECHECK_SECONDS)
    spans = _feed(chooser, {1: 0.010, 2: 0.005}, round(2 * threads.RECHECK_SECONDS / 0.02) + 5)
    assert 2 in spans and chooser.threads == 2 and chooser.log[-1][0] == "rechecked"


def test_rechecks_grow_further_apart_while_the_answer_holds():
    chooser = ThreadChooser(2)
    speeds = {1: 0.010, 2: 0.030}
    _feed(chooser, speeds, 1 + 2)
    checks = []
    for _ in range(4000):  # 4000 spans of ~20 ms: 80 s of training
        before = len(chooser.log)
        _feed(chooser, speeds, 1)
        if len(chooser.log) > before:
            checks.append(chooser._since_check)
    rechecks = [e for e in chooser.log if e[0] == "rechecked"]
    assert 3 <= len(rechecks) <= 6  # 5, 10, 20, 40 s apart: not every 5 s (16 times)
    assert all(e[3] == 1 for e in chooser.log)


# --- the engine: a thread made to arrive late, and the bits of n_jobs=2 whatever was chosen ---

numba = pytest.importorskip("numba")
from ebprop.core import init_network, make_family  # noqa: E402
from ebprop.kernels import fused, max_threads, run_minibatches_fused  # noqa: E402

SIZES = (120, 260, 200, 3)  # layers 1–2 have enough weights to be split over two threads


def _data(n):
    rng = np.random.default_rng(1)
    X = (rng.random((n, SIZES[0])) * (rng.random((n, SIZES[0])) < 0.3)).astype(np.float32)
    Y = -np.ones((n, SIZES[-1]), np.float32)
    Y[np.arange(n), rng.integers(0, SIZES[-1], n)] = 1
    return X, Y


def _net():
    return init_network(SIZES, make_family("binary"), np.random.default_rng(0), dtype=np.float32)


def _same(a, b):
    for x, y in zip(a.H + a.b, b.H + b.b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.fixture
def stall(monkeypatch):
    def set_stall(seconds):
        monkeypatch.setattr(fused, "STALL_SECONDS", seconds)

    return set_stall


@pytest.mark.skipif(max_threads() < 2, reason="needs two CPUs (and NUMBA_NUM_THREADS ≥ 2)")
def test_a_stalled_second_thread_makes_auto_fall_back_to_one(stall):
    X, Y = _data(400)
    order = np.arange(400)
    stall(0.05)  # 50 ms late per minibatch: far more than a minibatch of this net takes
    chooser = ThreadChooser(2)
    run_minibatches_fused(_net(), X, Y, order, 10, n_jobs=chooser)
    assert chooser.log[0][0] == "measured" and chooser.threads == 1
    # two threads chosen (as on an idle machine), then the second thread starts to stall
    chooser = ThreadChooser(2)
    _feed(chooser, {1: 0.040, 2: 0.020}, 1 + 2 * threads.PROBE_PAIRS)
    assert chooser.threads == 2
    run_minibatches_fused(_net(), X, Y, order, 10, n_jobs=chooser)
    assert chooser.threads == 1 and chooser.log[-1][0] == "stalled"


@pytest.mark.skipif(max_threads() < 2, reason="needs two CPUs (and NUMBA_NUM_THREADS ≥ 2)")
def test_auto_gives_the_bits_of_two_threads_whatever_it_chose(stall):
    X, Y = _data(300)
    order = np.random.default_rng(2).permutation(300)
    two, auto_idle, auto_stalled, one = _net(), _net(), _net(), _net()
    run_minibatches_fused(two, X, Y, order, 10, n_jobs=2)
    chooser = ThreadChooser(2)
    _feed(chooser, {1: 0.040, 2: 0.020}, 1 + 2 * threads.PROBE_PAIRS)  # starts on two threads
    run_minibatches_fused(auto_idle, X, Y, order, 10, n_jobs=chooser)
    stall(0.02)
    stalled = ThreadChooser(2)
    run_minibatches_fused(auto_stalled, X, Y, order, 10, n_jobs=stalled)
    assert stalled.threads == 1  # it ran spans on both thread counts
    _same(auto_idle, two)
    _same(auto_stalled, two)
    run_minibatches_fused(one, X, Y, order, 10, n_jobs=1)  # one thread's tiles: round-off only
    assert any(np.any(a != b) for a, b in zip(one.H, two.H, strict=True))


def test_auto_on_a_single_cpu_runs_one_thread(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert max_threads() == 1


# --- where "auto" is the default, and where it is not ---

_DIGITS = ["train", "--hidden", "8", "--epochs", "1", "--quiet"]


def _train(args):
    from click.testing import CliRunner

    from ebprop.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def _jobs(out):
    import json

    return json.loads((out / "options.json").read_text())["jobs"]


def test_a_new_cli_run_defaults_to_auto_and_takes_a_count(tmp_path):
    assert _train([*_DIGITS, "--out", tmp_path / "a"]).exit_code == 0
    assert _jobs(tmp_path / "a") == "auto"
    assert _train([*_DIGITS, "--out", tmp_path / "b", "--jobs", "1"]).exit_code == 0
    assert _jobs(tmp_path / "b") == 1
    bad = _train([*_DIGITS, "--out", tmp_path / "c", "--jobs", "two"])
    assert bad.exit_code == 2 and "'two' is neither a whole number nor auto" in bad.output


def test_sweep_runs_and_the_estimator_keep_one_thread_by_default():
    from ebprop import EBPClassifier
    from ebprop.runs import TrainOptions

    # a sweep builds TrainOptions from its experiment file: jobs None is one thread
    assert TrainOptions().jobs is None and TrainOptions().estimator_params()["n_jobs"] is None
    assert EBPClassifier().n_jobs is None
    est = EBPClassifier(hidden_layer_sizes=(300,), n_jobs="auto")
    est.init_parameters(784, [0, 1], np.random.default_rng(0))
    trainer = est.trainer()
    chooser = trainer._threads(60000)  # an MNIST-sized epoch: the compiled loop, a chooser
    assert isinstance(chooser, ThreadChooser) and trainer._threads(60000) is chooser
    assert trainer._threads(100) == "auto"  # too small for the compiled loop: the NumPy loop
