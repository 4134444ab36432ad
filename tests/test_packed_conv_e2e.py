"""A small binary CNN trained on the digits, end to end: estimator → .ebpb → C → Cortex-M (QEMU).

Every step must give EBP-D's predictions (``predict(..., readout="deterministic")``) exactly.
The QEMU tests skip, naming what is missing, without the cross tools (.ci/run installs them).
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from packed_c_helper import c_predict, requires_cc

from ebprop import EBPClassifier
from ebprop.cli import main
from ebprop.core.predict import predict_deterministic
from ebprop.datasets import Preprocessor, load_dataset
from ebprop.packed import PackedNetwork, pack_estimator, qemu, read_packed
from ebprop.packed.export_c import write_c_project
from ebprop.persist import save_model

ARCH = "8C3p1-MP2-16C3-24"
MISSING = qemu.missing_tools()
requires_qemu = pytest.mark.skipif(
    bool(MISSING),
    reason=f"Cortex-M/QEMU tools missing: {', '.join(MISSING)} (apt-get install "
    "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm make)",
)


@pytest.fixture(scope="module")
def cnn():
    ds = load_dataset("digits")
    pre = Preprocessor().fit(ds.X_train, ds.max_value)
    est = EBPClassifier(architecture=ARCH, max_iter=8, random_state=0)
    est.fit(pre.transform(ds.X_train), ds.y_train)
    reference = est.predict(pre.transform(ds.X_test), readout="deterministic")
    return ds, est, pre, reference


def test_packed_cnn_equals_ebp_d_on_every_digit(cnn):
    ds, est, pre, reference = cnn
    model = pack_estimator(est, pre)
    assert [x["kind"] for x in model.layers] == ["conv", "maxpool", "conv", "dense"]
    np.testing.assert_array_equal(PackedNetwork(model).predict(ds.X_test), reference)
    assert np.mean(reference == ds.y_test) > 0.5  # chance is 10 % (0.69 measured)


def test_packed_cnn_with_symmetric_pixels_equals_ebp_d_on_every_digit():
    # Pixels scaled to [-1, 1] (the MNIST conv recipe's): first-layer thresholds fold the scaling.
    ds = load_dataset("digits")
    pre = Preprocessor(scaling="symmetric").fit(ds.X_train, ds.max_value)
    est = EBPClassifier(architecture="6C3-MP2-16", max_iter=4, random_state=0)
    est.fit(pre.transform(ds.X_train), ds.y_train)
    reference = est.predict(pre.transform(ds.X_test), readout="deterministic")
    model = pack_estimator(est, pre)
    assert model.preprocessing["scaling"] == "symmetric"
    np.testing.assert_array_equal(PackedNetwork(model).predict(ds.X_test), reference)
    assert np.mean(reference == ds.y_test) > 0.5


@requires_cc
def test_cli_export_packed_and_c_equal_ebp_d(cnn, tmp_path):
    ds, est, pre, reference = cnn
    path = tmp_path / "cnn.npz"
    save_model(path, est, pre, {})
    res = CliRunner().invoke(main, ["export", str(path), "-o", str(tmp_path / "cnn.ebpb")])
    assert res.exit_code == 0, res.output
    # 72 + 1,152 + 1,536 + 240 = 3,000 weights: 11.7 KiB as float32
    assert f"layers {ARCH}-10, packed weights" in res.output
    assert "vs 11.7 KiB as float32" in res.output
    model = read_packed(tmp_path / "cnn.ebpb")
    np.testing.assert_array_equal(PackedNetwork(model).predict(ds.X_test), reference)
    res = CliRunner().invoke(
        main, ["export", str(path), "--format", "c", "-o", str(tmp_path / "c")]
    )
    assert res.exit_code == 0, res.output
    images = ds.X_test.reshape(len(ds.X_test), -1)
    for target in ("host", "cortex-m0plus"):
        got = c_predict(model, images, tmp_path / target, target=target)
        np.testing.assert_array_equal(model.classes[got], reference)


@requires_qemu
@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m0plus"])
def test_cortex_qemu_cnn_equals_ebp_d(cnn, tmp_path, target):
    ds, est, pre, reference = cnn
    model = pack_estimator(est, pre)
    write_c_project(model, tmp_path, target)
    sizes = qemu.build(tmp_path)
    n = 40
    r = qemu.run(tmp_path, ds.X_test[:n].reshape(n, -1))
    np.testing.assert_array_equal(model.classes[r.classes], reference[:n])
    # weights in flash, nothing in .data/.bss, activations on the stack (two small buffers)
    assert sizes["model"].data == sizes["model"].bss == 0
    weight_bytes = sum(w.nbytes for w in model.weights)
    assert sizes["model"].text < weight_bytes + 4096
    assert 0 < r.stack_peak < 1024
    assert (r.ticks > 0).all()


def test_bench_inference_runs_the_cnn(cnn, tmp_path):
    ds, est, pre, _ = cnn
    path = tmp_path / "cnn.npz"
    save_model(path, est, pre, {})
    res = CliRunner().invoke(
        main, ["bench-inference", str(path), "--dataset", "digits", "--batch", "1", "--batch",
               "50", "--repeats", "1"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "packed (numpy)" in res.output and "float32 (model only)" in res.output
    assert "numba" not in res.output  # a CNN has NumPy kernels only


@requires_qemu
def test_cli_cortex_project_of_a_cnn_runs_in_qemu(cnn, tmp_path):
    ds, est, pre, reference = cnn
    path = tmp_path / "cnn.npz"
    save_model(path, est, pre, {})
    out = tmp_path / "m0"
    res = CliRunner().invoke(
        main, ["export", str(path), "--format", "c", "--target", "cortex-m0plus", "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    r = qemu.run(out, ds.X_test[:8].reshape(8, -1))
    np.testing.assert_array_equal(est.classes_[r.classes], reference[:8])


@requires_cc
def test_rgb_cnn_estimator_exports_with_its_channels(tmp_path):
    # colour images reach the Preprocessor as (n, h, w·c) rows; the network's input_shape
    # (h, w, c) gives the packed model its image shape, and pixels stay in (y, x, c) order.
    # The label says whether red outweighs blue, so the channels' order matters.
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(300, 6, 6, 3), dtype=np.uint8)
    y = (images[..., 0].mean(axis=(1, 2)) > images[..., 2].mean(axis=(1, 2))).astype(int)
    pre = Preprocessor().fit(images.reshape(300, 6, 18), 255)
    X = pre.transform(images.reshape(300, 6, 18))
    est = EBPClassifier(
        architecture="8C3p1-32", input_shape=(6, 6, 3), max_iter=4, init_variance=30.0
    )
    est.set_params(random_state=0).fit(X, y)
    reference = est.predict(X, readout="deterministic")
    assert np.mean(reference == y) > 0.6
    model = pack_estimator(est, pre)
    assert model.preprocessing["image_shape"] == [6, 6, 3]
    outputs = predict_deterministic(est.network(), X.astype(est.dtype))
    assert len(np.unique(outputs)) > 8
    np.testing.assert_array_equal(PackedNetwork(model).decision_function(images), outputs[:, 0])
    np.testing.assert_array_equal(PackedNetwork(model).predict(images), reference)
    got = c_predict(model, images.reshape(300, -1), tmp_path)
    np.testing.assert_array_equal(model.classes[got], reference)
