"""Backpropagation and BinaryConnect baselines (skipped without torch, except the import checks)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from ebprop.baselines import BaselineOptions, MissingDependencyError, require_torch


def test_import_ebprop_does_not_import_torch():
    code = (
        "import sys, ebprop, ebprop.sweep, ebprop.baselines, ebprop.cli; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_torch_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'ebprop\[baselines\]'"):
        require_torch()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "sgd"}, "unknown baseline method 'sgd'"),
        ({"hidden": (10, 0)}, "hidden must be hidden layer widths, each a positive integer"),
        ({"hidden": "big"}, "hidden must be hidden layer widths, each a positive integer"),
        ({"hidden": 3.5}, "hidden must be hidden layer widths, each a positive integer"),
        ({"activation": "gelu"}, "unknown activation 'gelu'"),
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"batch_size": True}, "batch_size must be a positive integer"),
        ({"patience": 0}, "patience must be a positive integer"),
        ({"learning_rate": 0}, "learning_rate must be a number > 0"),
        ({"lr_decay": -1.0}, "lr_decay must be a number > 0"),
        ({"input_dropout": 0.0}, "input_dropout must be a keep probability"),
        ({"hidden_dropout": 2}, "hidden_dropout must be a keep probability"),
        ({"batch_norm": "yes"}, "batch_norm must be true, false or None"),
        ({"dtype": "float16"}, "dtype must be .float32. or .float64."),
        ({"seed": -1}, "seed must be >= 0"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"filters": 3}, "filters must be a string"),
    ],
)
def test_bad_options_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BaselineOptions(**kwargs)


def test_options_round_trip_and_defaults():
    o = BaselineOptions(method="binaryconnect", hidden=64, input_dropout=1.0)
    assert o.hidden == (64,) and o.batch_norm is True and o.input_dropout is None
    assert BaselineOptions(method="bp").batch_norm is False
    d = json.loads(json.dumps(o.to_dict()))
    assert BaselineOptions.from_dict(d) == o
    with pytest.raises(ValueError, match="unknown baseline option.*wieght"):
        BaselineOptions.from_dict({**d, "wieght": 1})


# ---------------------------------------------------------------------------- with torch
@pytest.fixture
def tm():
    pytest.importorskip("torch")
    return require_torch()


def _fast(**kw):
    base = {"hidden": (64,), "batch_size": 16, "learning_rate": 3e-3, "epochs": 10}
    return BaselineOptions(**{**base, **kw})


def test_bp_learns_digits(tm, tmp_path):
    summary = tm.train_baseline(_fast(method="bp"), tmp_path, threads=1)
    assert summary["finished"] and summary["epochs_run"] == 10
    assert summary["test_error"] < 0.05
    assert summary["readouts"] == {
        "BP": {"val_error": summary["val_error"], "test_error": summary["test_error"]}
    }
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    best = min(metrics, key=lambda r: (r["val_error"], r["epoch"]))
    assert summary["best_epoch"] == best["epoch"] and summary["test_error"] == best["test_error"]
    assert summary["n_weights"] == 64 * 64 + 64 * 10 and summary["n_biases"] == 74
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_binaryconnect_deploys_sign_weights_and_clips_shadow_weights(tm, tmp_path):
    import torch

    opts = _fast(method="binaryconnect", epochs=3)
    summary = tm.train_baseline(opts, tmp_path, threads=1)
    assert summary["test_error"] < 0.25  # learns (chance is 0.9)
    assert set(summary["readouts"]) == {"BC"}
    model = tm.MLP(64, 10, opts)
    with np.load(tmp_path / "checkpoint.npz", allow_pickle=False) as z:
        state = {k[6:]: torch.from_numpy(z[k]) for k in z.files if k.startswith("model/")}
    model.load_state_dict(state)
    shadow = [lin.weight.detach().numpy() for lin in model.linears]
    assert all(np.abs(w).max() <= 1.0 for w in shadow)
    deployed = model.deployed_weights()
    for w, s in zip(deployed, shadow, strict=True):
        assert set(np.unique(w)) <= {-1.0, 1.0}
        np.testing.assert_array_equal(w, np.where(s >= 0, 1.0, -1.0))
    # the network computes with exactly those ±1 weights
    model.eval()
    x = torch.randn(5, 64)
    lin0 = model.linears[0]
    expected = (x @ torch.from_numpy(deployed[0]).T + lin0.bias) / 8.0
    torch.testing.assert_close(lin0(x), expected)
    with torch.no_grad():
        lin0.weight[0, :3] = torch.tensor([3.0, -2.0, 0.5])
    model.clip_inplace()
    np.testing.assert_array_equal(lin0.weight[0, :3].detach().numpy(), [1.0, -1.0, 0.5])
    bp = tm.MLP(64, 10, _fast(method="bp"))
    with torch.no_grad():
        bp.linears[0].weight[0, 0] = 3.0
    bp.clip_inplace()  # backpropagation's weights are not clipped
    assert float(bp.linears[0].weight[0, 0].detach()) == 3.0


def test_straight_through_gradient_reaches_shadow_weights(tm):
    import torch

    lin = tm._BinaryLinear(4, 3)
    x = torch.randn(2, 4)
    lin(x).sum().backward()
    expected = x.sum(0).expand(3, 4) / 2.0  # d/dW of sum(sign(W) x / sqrt(4)), sign passed through
    torch.testing.assert_close(lin.weight.grad, expected)


@pytest.mark.parametrize(
    ("method", "more"),
    [("bp", {}), ("binaryconnect", {}), ("binarynet", {}), ("binarynet", {"augment_shift": 1})],
)
def test_stop_and_resume_equals_an_unbroken_run(tm, tmp_path, method, more):
    opts = _fast(method=method, epochs=4, hidden_dropout=0.8, input_dropout=0.9, **more)
    whole = tm.train_baseline(opts, tmp_path / "whole", threads=1)
    stop = threading.Event()
    part = tm.train_baseline(
        opts,
        tmp_path / "part",
        threads=1,
        stop_event=stop,
        on_epoch=lambda r: r["epoch"] == 2 and stop.set(),
    )
    assert part["finished"] is False and part["epochs_run"] == 2
    assert not (tmp_path / "part" / "summary.json").exists()
    resumed = tm.train_baseline(opts, tmp_path / "part", resume=True, threads=1)
    for key in ("best_epoch", "val_error", "test_error", "epochs_run"):
        assert resumed[key] == whole[key]
    lines = (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    if method == "binarynet":  # the best epoch's folded model is the unbroken run's
        a, b = np.load(tmp_path / "whole" / "model.npz"), np.load(tmp_path / "part" / "model.npz")
        for name in a.files:
            if name != "header":
                np.testing.assert_array_equal(a[name], b[name])
    # resuming a finished run returns its summary without training
    again = tm.train_baseline(opts, tmp_path / "part", resume=True, threads=1)
    assert again == json.loads((tmp_path / "part" / "summary.json").read_text())


def test_patience_stops_early(tm, tmp_path):
    summary = tm.train_baseline(
        _fast(method="bp", epochs=30, patience=1, learning_rate=0.05), tmp_path, threads=1
    )
    assert summary["stopped_early"] and summary["epochs_run"] < 30
    assert summary["epochs_run"] - summary["best_epoch"] == 1


def test_run_directory_errors(tm, tmp_path):
    opts = _fast(method="bp", epochs=1)
    tm.train_baseline(opts, tmp_path, threads=1)
    with pytest.raises(FileExistsError, match="already holds a run"):
        tm.train_baseline(opts, tmp_path)
    with pytest.raises(ValueError, match=r"options \['learning_rate'\] differ"):
        tm.train_baseline(_fast(method="bp", epochs=1, learning_rate=0.1), tmp_path, resume=True)
    (tmp_path / "summary.json").unlink()
    import ebprop.persist as persist

    with np.load(tmp_path / "checkpoint.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["meta"] = persist.encode_header({"version": 99, "epoch": 1})
    persist.atomic_savez(tmp_path / "checkpoint.npz", **arrays)
    from ebprop.exceptions import ModelFormatError

    with pytest.raises(ModelFormatError, match="unsupported checkpoint version 99"):
        tm.train_baseline(opts, tmp_path, resume=True)
