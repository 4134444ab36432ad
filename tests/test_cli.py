"""The ebprop command line, through click's test runner (and one real Ctrl-C)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from ebprop.cli import main
from ebprop.exceptions import ModelFormatError

TRAIN = ["train", "--hidden", "12", "--epochs", "2", "--seed", "1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = CliRunner().invoke(main, [*TRAIN, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def _ok(args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def _fails(args, code=1):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def test_train_prints_epoch_lines_and_summary(run):
    out, text = run
    lines = text.splitlines()
    assert lines[0].startswith(
        f"training binary net (hidden 12) on digits for 2 epochs → {out}; engine: the NumPy loop "
        "(an epoch of "
    ) and lines[0].endswith(
        " samples is too small to earn back the compiled loop's one-off compile)"
    )
    assert lines[1].startswith("epoch   1/2  train ") and "val P" in lines[1]
    assert lines[2].startswith("epoch   2/2") and "test P" in lines[2] and " D " in lines[2]
    assert lines[3].startswith("done: best epoch ")
    summary = json.loads((out / "summary.json").read_text())
    assert f"EBP-P {100 * summary['test_error_p']:5.2f}%" in lines[4]
    assert f"EBP-D {100 * summary['test_error_d']:5.2f}%" in lines[4]
    assert "NLL" in lines[5] and "ECE" in lines[5]
    assert (out / "model.npz").is_file()


def test_train_default_out_and_multi_width_hidden(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # batch 2: such narrow layers diverge at the default batch 10 (exit 3, docs/cli.md)
    text = _ok(["train", "--hidden", "6", "5", "--epochs", "1", "--validation", "0",
                "--batch-size", "2"])  # fmt: skip
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("digits-") and "(hidden 6-5)" in text
    opts = json.loads((run_dir / "options.json").read_text())
    assert opts["hidden"] == [6, 5] and opts["validation"] == 0


def test_train_resume_continues_and_refuses_other_options(tmp_path, run):
    out = tmp_path / "r"
    _ok(["train", "--hidden", "12", "--epochs", "1", "--seed", "1", "--quiet", "--out", out])
    text = _ok(["train", "--resume", out, "--epochs", "2"])
    assert text.startswith("resuming") and "epoch   2/2" in text
    a = np.load(out / "last.npz")["coef_0"]
    b = np.load(run[0] / "last.npz")["coef_0"]
    np.testing.assert_array_equal(a, b)
    r = _fails(["train", "--resume", out, "--seed", "3"], code=2)
    assert "only --epochs and --jobs may be given, not --seed" in r.output
    r = _fails(["train", "--resume", out, "--out", tmp_path / "x"], code=2)
    assert "do not also give --out" in r.output
    r = _fails(["train", "--out", out])
    last = r.output.splitlines()[-1]
    assert last.startswith("error: ") and "already holds a run" in last


def test_evaluate_text_and_json(run):
    out, _ = run
    summary = json.loads((out / "summary.json").read_text())
    text = _ok(["evaluate", out / "model.npz"])
    assert "digits test split, 599 images" in text
    assert f"EBP-P {100 * summary['test_error_p']:5.2f}%" in text
    assert "confusion matrix" in text and "per-class error" in text
    rep = json.loads(_ok(["evaluate", out / "model.npz", "--json", "--split", "val"]))
    assert rep["split"] == "val" and rep["n_samples"] == 240
    assert rep["error_p"] == summary["val_error_p"] and rep["error_d"] == summary["val_error_d"]
    assert np.array(rep["confusion_matrix_p"]).sum() == 240
    test = json.loads(_ok(["evaluate", out / "model.npz", "--json"]))
    assert test["ece"] == pytest.approx(summary["test_ece"])
    assert len(test["per_class_error_p"]) == 10


def test_predict_images_and_npy(run, tmp_path):
    from sklearn.datasets import load_digits

    out, _ = run
    digits = load_digits()
    img = digits.images[:3].astype(np.uint8)  # raw 0..16
    np.save(tmp_path / "three.npy", img)
    np.save(tmp_path / "flat.npy", img.reshape(3, 64)[0])
    # A big dark-on-white PNG of the first digit: auto-inverted and shrunk to 8x8.
    page = 255 - np.kron(img[0].astype(np.float64) * 255 / 16, np.ones((8, 8)))
    Image.fromarray(page.astype(np.uint8)).save(tmp_path / "zero.png")
    rows = json.loads(_ok(["predict", out / "model.npz", tmp_path / "three.npy",
                           tmp_path / "flat.npy", tmp_path / "zero.png", "--json"]))  # fmt: skip
    assert [r["input"] for r in rows][:3] == [f"{tmp_path / 'three.npy'}[{i}]" for i in range(3)]
    from ebprop.persist import load_model

    m = load_model(out / "model.npz")
    expected = m.estimator.predict(m.preprocessor.transform(img))
    assert [r["class"] for r in rows[:3]] == expected.tolist()
    assert rows[3]["class"] == rows[0]["class"]
    assert rows[4]["class"] == rows[0]["class"]  # the PNG reads back as the same digit
    assert all(0 < r["probability"] <= 1 for r in rows)
    text = _ok(["predict", out / "model.npz", tmp_path / "zero.png"])
    assert f"class {rows[4]['class']}  p=" in text and "(EBP-D:" in text


def test_predict_errors(run, tmp_path):
    out, _ = run
    np.save(tmp_path / "bad.npy", np.zeros((3, 5)))
    r = _fails(["predict", out / "model.npz", tmp_path / "bad.npy"])
    assert "expected (8, 8)" in r.output
    (tmp_path / "x.png").write_text("not an image")
    assert (
        "x.png: unreadable image"
        in _fails(["predict", out / "model.npz", tmp_path / "x.png"]).output
    )
    assert "no such file" in _fails(["predict", out / "model.npz", tmp_path / "none.png"]).output


def test_info_reports_layers_and_packed_memory(run):
    out, _ = run
    text = _ok(["info", out / "model.npz"])
    assert "64 → 12 → 10" in text and "64 x 12" in text and "12 x 10" in text
    rep = json.loads(_ok(["info", out / "model.npz", "--json"]))
    l0, l1 = rep["layers"]
    assert l0["params_1bit"] == 768 and l0["params_32bit"] == 12
    assert l0["bytes_trained"] == (768 + 12) * 4
    assert l0["bytes_deployed"] == 12 * 8 + 12 * 4  # 12 rows of one 64-bit word + float32 biases
    assert l1["bytes_deployed"] == 10 * 8 + 10 * 4
    assert rep["total"]["params_1bit"] == 768 + 120


def test_errors_are_one_line_unless_debug(tmp_path):
    for args in (["info", tmp_path / "none.npz"], ["evaluate", tmp_path / "none.npz"]):
        r = _fails(args)
        assert r.output.count("\n") == 1 and r.output.startswith("error: ")
        assert "no such model file" in r.output
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 broken")
    r = _fails(["info", tmp_path / "bad.npz"])
    assert r.output.startswith("error: ") and "bad.npz" in r.output and r.output.count("\n") == 1
    r = CliRunner().invoke(main, ["--debug", "info", str(tmp_path / "bad.npz")])
    assert r.exit_code != 0 and isinstance(r.exception, ModelFormatError)


@pytest.mark.parametrize(
    "args",
    [
        ["train", "--weights", "ternary"],
        ["train", "--hidden", "abc"],
        ["train", "--validation", "lots"],
        ["train", "--epochs", "0"],
        ["evaluate", "m.npz", "--split", "dev"],
        ["frobnicate"],
    ],
)
def test_bad_option_values_exit_2(args):
    r = _fails(args, code=2)
    assert "Traceback" not in r.output


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "ebprop", "train", "--out", str(out), "--hidden", "12",
           "--epochs", "50", "--checkpoint-every", "0", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600  # generous: only a starved machine waits long
    while not (out / "checkpoint.npz").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 130, stderr
    assert "Continue with: ebprop train --resume" in stderr and "Traceback" not in stderr
    assert not (out / "summary.json").exists()
    with np.load(out / "checkpoint.npz", allow_pickle=False) as f:
        header = json.loads(f["header"].tobytes())
    assert header["epoch"] < 50
    r = _ok(["train", "--resume", out, "--epochs", str(header["epoch"] + 1), "--quiet"])
    assert "done: best epoch" in r


def test_every_training_option_field_has_a_train_option_with_help():
    import dataclasses

    from ebprop.cli.train import train as train_command
    from ebprop.runs import TrainOptions

    by_name = {p.name: p for p in train_command.params}
    for f in dataclasses.fields(TrainOptions):
        if f.name == "extra":
            continue
        assert f.name in by_name, f"TrainOptions.{f.name} has no ebprop train option"
        option = by_name[f.name]
        assert "--" + f.name.replace("_", "-") in option.opts + option.secondary_opts
        assert option.help and len(option.help) > 10, f.name
    help_text = " ".join(CliRunner().invoke(main, ["train", "--help"]).output.split())
    # today's help texts, from the fields and the declarations
    assert (
        "--init-variance FLOAT Variance of the initial H, times n_in. [default: 1.0]" in help_text
    )
    assert "'hidden=…,output=…,start=…,ramp=…,stop=…'. [default: off]" in help_text
    assert "--weights [binary|real]" in help_text and "--architecture, --arch TEXT" in help_text


def test_a_generated_option_reaches_the_run(tmp_path):
    from ebprop.runs import TrainOptions

    out = tmp_path / "run"
    res = CliRunner().invoke(
        main,
        ["train", "--hidden", "16", "--batch-size", "1", "--epochs", "1", "--init-variance",
         "2.5", "--test-seed", "3", "--reinforcement", "1.0001", "--out", str(out), "--quiet"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    stored = json.loads((out / "options.json").read_text())
    assert stored["init_variance"] == 2.5 and stored["test_seed"] == 3
    assert stored["reinforcement"] == 1.0001 and stored["hidden"] == [16]
    assert stored == TrainOptions(**stored).to_dict()  # nothing else set: the fields' defaults
    assert stored["fit_intercept"] is True and stored["deskew"] is False
