"""Conv architectures in runs and on the command line: options, resume, info, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ebprop.cli import main
from ebprop.fileio import read_npz
from ebprop.runs import TrainOptions, train_run

CONV = {"dataset": "digits", "architecture": "6C3p1-MP2-32", "epochs": 2, "seed": 1}


def _params(path):
    arrays = read_npz(path, what="model")
    prefixes = ("coef_", "intercept_", "bias_precision_")
    return {k: v for k, v in arrays.items() if k.startswith(prefixes)}


@pytest.mark.parametrize(("step", "n_arrays"), [("sum", 6), ("precision", 9)])
def test_stop_mid_epoch_then_resume_is_bit_identical(tmp_path, step, n_arrays):
    options = TrainOptions(**CONV, conv_bias_step=step)
    full = tmp_path / "full"
    train_run(options, full, make_plots=False)
    out = tmp_path / "run"

    def stop_in_epoch_2(epoch, position, n_errors):
        return epoch == 2 and position >= 300

    part = train_run(options, out, on_batch=stop_in_epoch_2, checkpoint_every=None)
    assert part["finished"] is False and part["position"] == 300
    train_run(None, out, resume=True, make_plots=False)
    for name in ("last.npz", "model.npz"):
        a, b = _params(out / name), _params(full / name)
        assert a.keys() == b.keys() and len(a) == n_arrays
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_the_precision_bias_step_is_a_run_option_kept_in_model_files(tmp_path):
    plain = _params_of_run(tmp_path / "sum", "sum")
    weighted = _params_of_run(tmp_path / "precision", "precision")
    assert np.all(weighted["bias_precision_0"] > 1.0)  # the conv channels gathered evidence
    np.testing.assert_array_equal(weighted["bias_precision_1"], 1.0)  # dense layers: unused
    assert "bias_precision_0" not in plain  # the plain step keeps no precisions
    assert not np.array_equal(weighted["intercept_0"], plain["intercept_0"])


def _params_of_run(out, step):
    train_run(TrainOptions(**(CONV | {"epochs": 1}), conv_bias_step=step), out, make_plots=False)
    return _params(out / "last.npz")


def test_the_precision_bias_step_needs_conv_layers():
    with pytest.raises(ValueError, match="conv_bias_step='precision' applies to conv layers") as e:
        TrainOptions(dataset="digits", hidden=(16,), conv_bias_step="precision")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="conv_bias_step must be 'sum' or 'precision', got 'mean'"):
        TrainOptions(**CONV, conv_bias_step="mean")


def test_options_carry_the_architecture_and_refuse_both():
    opts = TrainOptions(**CONV)
    assert opts.estimator_params()["architecture"] == "6C3p1-MP2-32"
    assert "hidden_layer_sizes" not in opts.estimator_params()
    assert TrainOptions.from_dict(opts.to_dict()).architecture == "6C3p1-MP2-32"
    with pytest.raises(ValueError, match="give hidden or architecture, not both"):
        TrainOptions(**CONV, hidden=(50,))
    with pytest.raises(ValueError, match="architecture: architecture token '6Q3'"):
        TrainOptions(**(CONV | {"architecture": "6Q3-32"}))


def test_refit_thresholds_runs_for_conv_networks(tmp_path):
    train_run(TrainOptions(**CONV, refit_thresholds=True), tmp_path / "r", make_plots=False)
    arrays = read_npz(tmp_path / "r" / "model.npz", what="model")
    shapes = [arrays[f"det_intercept_{i}"].shape for i in range(3)]
    assert shapes == [(6,), (32,), (10,)]  # conv channels, dense units, output (kept)
    np.testing.assert_array_equal(arrays["det_intercept_2"], arrays["intercept_2"])
    assert not np.array_equal(arrays["det_intercept_0"], arrays["intercept_0"])


def test_conv_layers_need_images(tmp_path):
    with pytest.raises(ValueError, match="conv layers need images") as info:
        train_run(TrainOptions(**CONV, filters="sobel"), tmp_path / "r")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "r" / "options.json").exists()


def test_cli_arch_alias_info_and_errors(tmp_path):
    runner = CliRunner()
    out = tmp_path / "r"
    res = runner.invoke(
        main, ["train", "--arch", "4C3s2-16", "--epochs", "1", "--out", str(out), "-q"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads((out / "options.json").read_text())["architecture"] == "4C3s2-16"
    res = runner.invoke(main, ["info", str(out / "model.npz")])
    assert res.exit_code == 0, res.output
    assert "layers: 8x8x1 → 4C3s2 3x3x4 → 16 1x1x16 → 10 1x1x10" in res.output
    res = runner.invoke(main, ["info", "--json", str(out / "model.npz")])
    layers = json.loads(res.output)["layer_shapes"]
    assert layers[0] == {"layer": "4C3s2", "output_shape": [3, 3, 4]}
    both = runner.invoke(main, ["train", "--hidden", "50", "--architecture", "4C3-16"])
    assert both.exit_code == 2
    assert "give --hidden or --architecture (--arch), not both" in both.output
    bad = runner.invoke(main, ["train", "--arch", "4C3-MX2", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "'MX2'" in bad.output


def test_architecture_is_a_sweep_key_and_names_the_runs():
    from ebprop.sweep.experiment import parse_experiment

    text = """
[settings]
dataset = "digits"
epochs = 1
architecture = ["4C3s2-16", "6C3p1-MP2-32"]
seed = 0
"""
    runs = parse_experiment(text).runs
    assert [r.name for r in runs] == [
        "ebp-binary-a4C3s2-16-f_none-do1-s0",
        "ebp-binary-a6C3p1-MP2-32-f_none-do1-s0",
    ]
    assert runs[1].options["architecture"] == "6C3p1-MP2-32"


def test_a_conv_run_records_no_hidden_size_and_old_folders_resume(tmp_path):
    """With ``architecture`` the run records ``hidden: null`` (not the unused default [100]); a
    folder written before, with ``hidden: [100]`` beside the architecture, still loads, counts
    as the same run for a sweep and resumes."""
    from ebprop.baselines import BaselineOptions
    from ebprop.runs import RunFolder, load_options

    opts = TrainOptions(**(CONV | {"epochs": 1}))
    assert opts.hidden is None and opts.to_dict()["hidden"] is None
    assert TrainOptions.from_dict(opts.to_dict()).hidden is None
    assert BaselineOptions(method="bp", architecture="6C3p1-MP2-32").to_dict()["hidden"] is None
    out = tmp_path / "r"
    summary = train_run(opts, out, make_plots=False)
    assert summary["options"]["hidden"] is None
    stored = json.loads((out / "options.json").read_text())
    assert stored["hidden"] is None and stored["architecture"] == "6C3p1-MP2-32"
    runner = CliRunner()
    res = runner.invoke(main, ["info", str(out)])
    assert res.exit_code == 0 and "hidden" not in res.output.lower(), res.output
    stored["hidden"] = [100]  # what a conv run stored before
    (out / "options.json").write_text(json.dumps(stored))
    assert load_options(out).hidden is None
    more = opts.to_dict() | {"epochs": 2}
    assert RunFolder(out).status(opts.to_dict()) == "done"
    assert RunFolder(out).status(more) == "partial"
    with pytest.raises(ValueError, match=r"other options \['architecture', 'hidden'\]"):
        RunFolder(out).status(more | {"architecture": None, "hidden": [100]})
    res = runner.invoke(main, ["train", "--resume", str(out), "--epochs", "2", "-q"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "summary.json").read_text())["epochs_run"] == 2
