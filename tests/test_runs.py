"""Training runs: files, best-model selection, early stopping, and exact resumption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from ebprop.exceptions import ModelFormatError
from ebprop.persist import load_model
from ebprop.runs import TrainOptions, load_options, load_summary, train_run

SMALL = {"hidden": (12,), "epochs": 3, "seed": 5}


def _params(path):
    est = load_model(path).estimator
    return [*est.coefs_, *est.intercepts_]


def _assert_same_params(a, b):
    pa, pb = _params(a), _params(b)
    assert len(pa) == len(pb)
    for x, y in zip(pa, pb, strict=True):
        np.testing.assert_array_equal(x, y)


def _records(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    for r in recs:  # wall-clock fields differ between runs
        for k in ("seconds", "samples_per_s", "eval_seconds", "cpu_seconds"):
            r.pop(k)
    return recs


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "run"
    seen = []
    summary = train_run(TrainOptions(**SMALL), out, on_epoch=seen.append)
    return out, summary, seen


def test_run_directory_holds_every_file(full_run):
    out, summary, seen = full_run
    names = {p.name for p in out.iterdir()}
    assert names == {
        "options.json", "checkpoint.npz", "metrics.jsonl", "last.npz", "model.npz",
        "model_p.npz", "model_d.npz", "summary.json", "learning_curves.png",
        "confusion_matrix.png", "reliability.png", "confidence_hist.png",
        ".ebprop.lock",  # the advisory lock file a training holds (released, left in place)
    }  # fmt: skip
    for png in out.glob("*.png"):
        with Image.open(png) as im:
            im.verify()
    assert load_summary(out) == summary
    assert load_options(out) == TrainOptions(**SMALL)
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert recs == seen
    assert [r["epoch"] for r in recs] == [1, 2, 3]
    assert set(recs[0]) >= {"train_error", "val_error_p", "val_error_d", "test_error_p",
                            "test_error_d", "seconds", "samples_per_s"}  # fmt: skip


def test_summary_reports_the_best_validation_epoch(full_run):
    out, s, recs = full_run
    vals = [r["val_error_p"] for r in recs]
    assert s["best_epoch"] == int(np.argmin(vals)) + 1  # first minimum wins
    best = recs[s["best_epoch"] - 1]
    assert (s["test_error_p"], s["test_error_d"]) == (best["test_error_p"], best["test_error_d"])
    assert s["n_weights"] == 64 * 12 + 12 * 10 and s["n_features"] == 64
    assert 0 <= s["test_ece"] <= 1 and 0 <= s["test_brier"] <= 2 and s["test_nll"] > 0
    model = load_model(out / "model.npz")
    assert model.metadata["metrics"]["epoch"] == s["best_epoch"]
    assert load_model(out / "last.npz").metadata["metrics"]["epoch"] == 3
    assert model.metadata["training_options"]["hidden"] == [12]


def test_stop_mid_epoch_then_resume_is_identical(tmp_path, full_run):
    full = full_run[0]
    out = tmp_path / "run"

    def stop_in_epoch_2(epoch, position, n_errors):
        return epoch == 2 and position >= 500

    partial = train_run(TrainOptions(**SMALL), out, on_batch=stop_in_epoch_2, checkpoint_every=None)
    assert partial == {"finished": False, "epoch": 1, "position": 500, "out_dir": str(out)}
    assert not (out / "summary.json").exists()
    resumed = train_run(None, out, resume=True, make_plots=False)
    assert resumed["finished"]
    _assert_same_params(out / "last.npz", full / "last.npz")
    _assert_same_params(out / "model.npz", full / "model.npz")
    assert _records(out) == _records(full)
    # a finished run resumes to its summary without training again
    assert train_run(None, out, resume=True) == resumed


def test_runner_checks_every_callback_every_minibatches_and_resumes_exactly(tmp_path, full_run):
    # Without on_batch the runner's own check (progress, checkpoint clock, stop event) comes
    # every CALLBACK_EVERY minibatches: a stop event seen at its second check stops there.
    from ebprop.runs.ebp import CALLBACK_EVERY

    class StopAtSecondCheck:
        checks = 0

        def is_set(self) -> bool:
            self.checks += 1
            return self.checks >= 2

        def set(self) -> None:
            self.checks = 2

    out = tmp_path / "run"
    part = train_run(TrainOptions(**SMALL), out, stop_event=StopAtSecondCheck())
    assert part == {"finished": False, "epoch": 0, "position": 2 * CALLBACK_EVERY * 10,
                    "out_dir": str(out)}  # fmt: skip
    train_run(None, out, resume=True, make_plots=False)
    _assert_same_params(out / "last.npz", full_run[0] / "last.npz")


def test_stop_event_at_epoch_end_and_raising_epochs(tmp_path):
    import threading

    out = tmp_path / "run"
    stop = threading.Event()
    part = train_run(TrainOptions(**SMALL), out, stop_event=stop, on_epoch=lambda r: stop.set())
    assert part["finished"] is False and part["epoch"] == 1 and part["position"] == 0
    train_run(TrainOptions(**SMALL), out, resume=True, make_plots=False)
    more = TrainOptions(**(SMALL | {"epochs": 4}))
    train_run(more, out, resume=True, make_plots=False)  # one more epoch for a finished run
    ref = tmp_path / "ref"
    train_run(more, ref, make_plots=False)
    assert not list(ref.glob("*.png"))
    _assert_same_params(out / "last.npz", ref / "last.npz")
    assert load_summary(out)["epochs_run"] == 4


def test_resume_refuses_other_options_and_existing_out(tmp_path, full_run):
    full = full_run[0]
    with pytest.raises(ValueError, match=r"\['seed'\] differ"):
        train_run(TrainOptions(**(SMALL | {"seed": 6})), full, resume=True)
    with pytest.raises(FileExistsError, match="already holds a run"):
        train_run(TrainOptions(**SMALL), full)
    with pytest.raises(FileNotFoundError, match="not a run directory"):
        train_run(None, tmp_path / "nothing", resume=True)
    with pytest.raises(ValueError, match="options are required"):
        train_run(None, tmp_path / "x")


def test_resume_refuses_a_corrupt_checkpoint(tmp_path):
    out = tmp_path / "run"
    train_run(TrainOptions(**SMALL), out, on_batch=lambda e, p, n: p >= 100)
    (out / "checkpoint.npz").write_bytes(b"garbage")
    with pytest.raises(ModelFormatError, match="unreadable checkpoint"):
        train_run(None, out, resume=True)


def test_patience_stops_early_and_no_validation_keeps_last(tmp_path):
    s = train_run(
        TrainOptions(hidden=(4,), epochs=30, patience=1), tmp_path / "a", make_plots=False
    )
    assert s["stopped_early"] and s["epochs_run"] == s["best_epoch"] + 1 < 30
    s = train_run(
        TrainOptions(hidden=(30,), epochs=2, validation=0, weights="real"), tmp_path / "b"
    )
    assert s["best_epoch"] == 2 and s["val_error_p"] is None and s["n_val"] == 0
    assert not (tmp_path / "b" / "confidence_hist.png").exists()  # binary nets only


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"hidden": (0,)}, "hidden layer width"),
        ({"weights": "ternary"}, "weights must be"),
        ({"dtype": "float16"}, "dtype must be"),
        ({"select_by": "best"}, "select_by must be"),
        ({"input_dropout": 1.5}, "input_dropout"),
        ({"patience": 0}, "patience"),
        ({"seed": 1.5}, "seed must be an integer"),
    ],
)
def test_options_validate(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainOptions(**kw)


def test_options_dict_round_trip_and_unknown_keys():
    o = TrainOptions(hidden=[3, 4], filters="sobel", validation=0.1)
    d = json.loads(json.dumps(o.to_dict()))
    assert TrainOptions.from_dict(d) == o and d["hidden"] == [3, 4]
    with pytest.raises(ValueError, match=r"unknown training options \['lr'\]"):
        TrainOptions.from_dict(d | {"lr": 0.1})


def test_sigkill_mid_run_then_resume_is_identical(tmp_path, full_run):
    """A real kill: the process dies at an arbitrary point; atomic writes keep a usable state."""
    full = full_run[0]
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "ebprop", "train", "--out", str(out), "--hidden", "12",
           "--epochs", "3", "--seed", "5", "--checkpoint-every", "0", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600  # generous: only a starved machine waits long
    while not (out / "checkpoint.npz").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
    time.sleep(0.05)  # let it train some minibatches past the first checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists(), "the run finished before it could be killed"
    train_run(None, out, resume=True, make_plots=False)
    _assert_same_params(out / "last.npz", full / "last.npz")
    _assert_same_params(out / "model.npz", full / "model.npz")
    assert _records(out) == _records(full)


def test_divergence_is_reported_and_the_last_good_checkpoint_kept(tmp_path, monkeypatch):
    import ebprop.trainer as engine

    real = engine.run_minibatches_inplace

    def poisoned(net, *args, **kwargs):
        result = real(net, *args, **kwargs)
        net.H[0][0, 0] = np.nan
        return result

    out = tmp_path / "run"
    train_run(TrainOptions(**(SMALL | {"epochs": 1})), out, make_plots=False)
    monkeypatch.setattr(engine, "run_minibatches_inplace", poisoned)
    with pytest.raises(FloatingPointError, match="diverged in epoch 2"):
        train_run(TrainOptions(**(SMALL | {"epochs": 2})), out, resume=True)
    monkeypatch.setattr(engine, "run_minibatches_inplace", real)
    assert (
        train_run(None, out, resume=True, make_plots=False)["epochs_run"] == 2
    )  # resumes from the good state


def test_saved_models_record_the_epochs_run(full_run):
    """Issue 11 item 11: a model written by a run knows how many epochs trained it."""
    out, summary, _ = full_run
    assert load_model(out / "last.npz").estimator.n_iter_ == summary["epochs_run"] == 3
    best = load_model(out / "model.npz")
    assert best.estimator.n_iter_ == summary["best_epoch"] == best.metadata["metrics"]["epoch"]


def test_a_run_failing_on_a_bad_option_leaves_nothing_in_the_way(tmp_path):
    """Issue 11 item 4: everything is checked before the first write, so the retry can start."""
    out = tmp_path / "run"
    too_many = TrainOptions(**(SMALL | {"epochs": 1, "validation": 5000}))  # digits has 1,198
    with pytest.raises(ValueError, match="validation"):
        train_run(too_many, out, make_plots=False)
    assert not out.exists()
    summary = train_run(TrainOptions(**(SMALL | {"epochs": 1})), out, make_plots=False)
    assert summary["finished"] and summary["epochs_run"] == 1


def test_summary_has_the_schema_every_method_shares(full_run):
    _, summary, _ = full_run
    assert summary["method"] == "ebp"
    assert summary["readouts"] == {
        "EBP-P": {"val_error": summary["val_error_p"], "test_error": summary["test_error_p"]},
        "EBP-D": {"val_error": summary["val_error_d"], "test_error": summary["test_error_d"]},
    }
    for key in ("finished", "options", "best_epoch", "epochs_run", "stopped_early",
                "seconds_per_epoch_mean", "seconds_total", "n_weights"):  # fmt: skip
        assert key in summary


def test_options_name_unknown_data_settings_before_any_run():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        TrainOptions(dataset="cifar")
    with pytest.raises(ValueError, match="unknown scaling 'log'"):
        TrainOptions(scaling="log")
    with pytest.raises(ValueError, match="filters: unknown filter bank 'wavelets'"):
        TrainOptions(filters="wavelets")
    with pytest.raises(ValueError, match="prior_variance must be a positive"):
        TrainOptions(prior_variance=0.0)
    with pytest.raises(ValueError, match="reinforcement applies to binary weights only"):
        TrainOptions(weights="real", reinforcement="auto")


def test_training_builds_one_network(tmp_path, monkeypatch):
    from ebprop.core import Network

    built = []
    real_init = Network.__init__

    def counting_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        if self.dtype == np.float32:  # EBP-P is read out through float64 copies (not trained)
            built.append(self)

    monkeypatch.setattr(Network, "__init__", counting_init)
    seen = []
    train_run(
        TrainOptions(**(SMALL | {"epochs": 2})),
        tmp_path / "run",
        on_epoch=lambda r: seen.append(len(built)),
        make_plots=False,
    )
    assert seen == [1, 1]  # drawn once; evaluating and saving every epoch reuse it
