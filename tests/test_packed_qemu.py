"""The Cortex-M projects of ``ebprop export --target``, cross-compiled and run under QEMU.

Skips (with the missing tool named) unless gcc-arm-none-eabi, libnewlib-arm-none-eabi,
qemu-system-arm and make are installed; .ci/run installs them. A handful of images per core
keeps these fast; the 1,000-image MNIST check is in test_packed_mnist.py (slow) and
benchmarks/bench_cortex.py.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

from ebprop import EBPClassifier
from ebprop.cli import main
from ebprop.datasets import Preprocessor, load_dataset
from ebprop.packed import PackedNetwork, pack_estimator, qemu
from ebprop.packed.export_c import write_c_project
from ebprop.persist import save_model

MISSING = qemu.missing_tools()
pytestmark = pytest.mark.skipif(
    bool(MISSING),
    reason=f"Cortex-M/QEMU tools missing: {', '.join(MISSING)} (apt-get install "
    "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm make)",
)
TARGETS = ["cortex-m4", "cortex-m0plus"]


@pytest.fixture(scope="module")
def digits_model():
    ds = load_dataset("digits")
    pre = Preprocessor().fit(ds.X_train, ds.max_value)
    est = EBPClassifier(hidden_layer_sizes=(70, 40), max_iter=2, random_state=2)
    est.fit(pre.transform(ds.X_train), ds.y_train)
    return ds, est, pre


@pytest.mark.parametrize("target", TARGETS)
def test_cortex_qemu_predictions_equal_packed_network(digits_model, tmp_path, target):
    ds, est, pre = digits_model
    model = pack_estimator(est, pre)
    write_c_project(model, tmp_path, target)
    sizes = qemu.build(tmp_path)
    images = ds.X_test[:24].reshape(24, -1)
    r = qemu.run(tmp_path, images)
    ref = est.predict(pre.transform(ds.X_test[:24]), readout="deterministic")
    np.testing.assert_array_equal(est.classes_[r.classes], ref)
    np.testing.assert_array_equal(model.classes[r.classes], PackedNetwork(model).predict(images))
    # sizes and measurements are plausible: the weights are in flash, RAM is small
    weight_bytes = sum(-(-n // 32) * 4 * m for n, m in zip(model.sizes[:-1], model.sizes[1:]))
    assert weight_bytes < sizes["model"].text < weight_bytes + 4096
    assert sizes["model"].data == sizes["model"].bss == 0  # all state on the stack
    assert 0 < r.stack_peak < 1024
    assert (r.ticks > 0).all() and r.instructions_per_tick > 1


@pytest.mark.parametrize("target", TARGETS)
def test_cortex_model_object_calls_no_helpers(digits_model, tmp_path, target):
    # no soft-float, no 64-bit or popcount/ctz helper from libgcc: model.o is self-contained
    ds, est, pre = digits_model
    write_c_project(pack_estimator(est, pre), tmp_path, target)
    qemu.build(tmp_path)
    undefined = subprocess.run(
        ["arm-none-eabi-nm", "-u", "model.o"], cwd=tmp_path, capture_output=True, text=True
    ).stdout
    assert undefined.strip() == ""


def test_cortex_qemu_rank_table_fold(digits_model, tmp_path):
    # output biases that only the rank table folds exactly (see test_packed_c.py)
    ds, est, pre = digits_model
    model = pack_estimator(est, pre)
    model.weights[-1][1] = model.weights[-1][0]
    model.output_bias = np.full(10, -100, np.float32)
    model.output_bias[:2] = [0.5, 0.5 + 2**-23]
    images = np.random.default_rng(1).integers(0, 17, size=(40, 64), dtype=np.uint8)
    write_c_project(model, tmp_path, "cortex-m0plus")
    assert "OUT_RANK" in (tmp_path / "model.c").read_text()
    qemu.build(tmp_path)
    r = qemu.run(tmp_path, images)
    np.testing.assert_array_equal(model.classes[r.classes], PackedNetwork(model).predict(images))


def test_cortex_export_cli_make_run(digits_model, tmp_path):
    ds, est, pre = digits_model
    path = tmp_path / "model.npz"
    save_model(path, est, pre, {})
    out = tmp_path / "m4"
    res = CliRunner().invoke(
        main, ["export", str(path), "--format", "c", "--target", "cortex-m4", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    (out / "digits.bin").write_bytes(ds.X_test[:5].tobytes())
    done = subprocess.run(
        ["make", "-s", "run", "IMAGES=digits.bin", "RESULTS=out.txt"],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = (out / "out.txt").read_text().splitlines()
    assert [int(x.split()[0]) for x in lines[:5]] == list(
        np.searchsorted(est.classes_, PackedNetwork.from_estimator(est, pre).predict(ds.X_test[:5]))
    )
    assert lines[-1] == "images 5"


def test_cortex_qemu_harness_fails_loudly(digits_model, tmp_path):
    # an unreadable images file or an over-long command line: exit status 1 and a message
    ds, est, pre = digits_model
    write_c_project(pack_estimator(est, pre), tmp_path, "cortex-m4")
    qemu.build(tmp_path)
    for images in ("missing.bin", "x" * 300):
        done = subprocess.run(
            [
                "qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none",
                "-serial", "none", "-semihosting-config",
                f"enable=on,target=native,arg=model.elf,arg={images},arg=out.txt",
                "-kernel", "model.elf",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        assert done.returncode == 1
        assert "ebprop harness: " in done.stdout + done.stderr
