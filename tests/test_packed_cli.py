"""``ebprop export`` and ``ebprop bench-inference`` on a small saved digits model."""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner

from ebprop import EBPClassifier
from ebprop.cli import main
from ebprop.datasets import Preprocessor, load_dataset
from ebprop.packed import PackedNetwork
from ebprop.persist import save_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    ds = load_dataset("digits")
    pre = Preprocessor().fit(ds.X_train, ds.max_value)
    est = EBPClassifier(hidden_layer_sizes=(30, 20), max_iter=2, random_state=0)
    est.fit(pre.transform(ds.X_train), ds.y_train)
    path = tmp_path_factory.mktemp("m") / "model.npz"
    save_model(path, est, pre, {"training_options": {"dataset": "digits"}})
    return path, est, pre, ds


def test_export_packed_then_load_predicts_like_the_model(saved, tmp_path):
    path, est, pre, ds = saved
    out = tmp_path / "m.ebpb"
    res = CliRunner().invoke(main, ["export", str(path), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "x smaller" in res.output and out.is_file()
    net = PackedNetwork.load(out)
    ref = est.predict(pre.transform(ds.X_test), readout="deterministic")
    np.testing.assert_array_equal(net.predict(ds.X_test), ref)
    # default output name: next to the model
    res = CliRunner().invoke(main, ["export", str(path)])
    assert res.exit_code == 0 and path.with_suffix(".ebpb").is_file()


def test_export_c_writes_the_source_pair(saved, tmp_path):
    path = saved[0]
    res = CliRunner().invoke(
        main, ["export", str(path), "--format", "c", "-o", str(tmp_path / "c")]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c" / "model.h").is_file() and (tmp_path / "c" / "model.c").is_file()


def test_export_refuses_real_weights_with_one_line_error(tmp_path):
    ds = load_dataset("digits")
    pre = Preprocessor().fit(ds.X_train, ds.max_value)
    est = EBPClassifier(hidden_layer_sizes=(5,), weights="real", max_iter=1, random_state=0)
    est.fit(pre.transform(ds.X_train[:100]), ds.y_train[:100])
    path = tmp_path / "real.npz"
    save_model(path, est, pre, {})
    res = CliRunner().invoke(main, ["export", str(path)])
    assert res.exit_code == 1
    assert "only binary-weight models can be packed" in res.output


def test_bench_inference_prints_rates_and_sizes(saved):
    path = saved[0]
    res = CliRunner().invoke(
        main, ["bench-inference", str(path), "--batch", "1", "--batch", "500", "--repeats", "1"]
    )
    assert res.exit_code == 0, res.output
    assert "digits test images" in res.output and ".ebpb file" in res.output
    for path_name in ("packed (numba)", "packed (numpy)", "float32", "float32 (model only)"):
        pattern = re.compile(re.escape(path_name) + r"\s+[0-9]")
        rows = [line for line in res.output.splitlines() if pattern.match(line)]
        assert len(rows) == 2, res.output


def test_export_cortex_target_writes_a_project_and_needs_format_c(saved, tmp_path):
    path = saved[0]
    out = tmp_path / "m0"
    res = CliRunner().invoke(
        main, ["export", str(path), "--format", "c", "--target", "cortex-m0plus", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    names = {p.name for p in out.iterdir()}
    assert names == {
        "model.h",
        "model.c",
        "startup.c",
        "semihost.h",
        "harness.c",
        "cortex_m.ld",
        "Makefile",
    }
    makefile = (out / "Makefile").read_text()
    assert "MACHINE = microbit" in makefile and "-mcpu=cortex-m0plus" in makefile
    assert "@" not in makefile.replace("$@", "").replace("@echo", "")
    assert "typedef uint32_t ebprop_word;" in (out / "model.c").read_text()
    res = CliRunner().invoke(
        main, ["export", str(path), "--target", "cortex-m4", "-o", str(tmp_path / "x.ebpb")]
    )
    assert res.exit_code == 2 and "needs --format c" in res.output
    assert not (tmp_path / "x.ebpb").exists()
