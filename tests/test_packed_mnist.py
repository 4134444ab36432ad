"""Packed runtime, integer-only C export and the Cortex-M builds on MNIST (skips without MNIST)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import mnist_dir, requires_mnist
from packed_c_helper import CC, c_predict

from ebprop import EBPClassifier
from ebprop.datasets import Preprocessor, load_dataset
from ebprop.packed import PackedNetwork, qemu
from ebprop.packed.export_c import write_c_project
from ebprop.packed.pack import fold_output_bias

pytestmark = [requires_mnist, pytest.mark.slow]


@pytest.fixture(scope="module")
def trained():
    ds = load_dataset("mnist", mnist_dir(), download=False)
    pre = Preprocessor(scaling="unit").fit(ds.X_train, ds.max_value)
    est = EBPClassifier(hidden_layer_sizes=(100,), max_iter=1, random_state=0)
    est.fit(pre.transform(ds.X_train[:4000]), ds.y_train[:4000])
    return ds, pre, est


def test_full_test_set_predictions_and_preactivations_exact(trained):
    ds, pre, est = trained
    X = ds.X_test
    assert len(X) == 10_000
    ref = est.predict(pre.transform(X), readout="deterministic")
    net = PackedNetwork.from_estimator(est, pre)
    pred = net.predict(X)
    np.testing.assert_array_equal(pred, ref)
    assert (pred == ds.y_test).mean() > 0.7  # briefly trained, but clearly learning
    # integer pre-activations: pixel sums equal the float64 sums, the hidden decisions equal the
    # float32 decisions of the estimator's own path, output dots equal h @ W exactly
    ints = net.integer_preactivations(X)
    W0 = np.where(est.coefs_[0] >= 0, 1.0, -1.0)
    np.testing.assert_array_equal(ints[0], (X.reshape(len(X), -1).astype(np.float64) @ W0))
    x32 = pre.transform(X)
    fires32 = (x32 @ W0.astype(np.float32) + est.intercepts_[0]) >= 0
    np.testing.assert_array_equal(ints[0] >= net.model.thresholds[0], fires32)
    h = np.where(fires32, 1.0, -1.0)
    np.testing.assert_array_equal(ints[1], h @ np.where(est.coefs_[1] >= 0, 1.0, -1.0))


@pytest.mark.skipif(CC is None, reason="no C compiler (cc) on PATH")
def test_c_export_on_1000_mnist_test_images(trained, tmp_path):
    ds, pre, est = trained
    images = ds.X_test[:1000]
    ref = est.predict(pre.transform(images), readout="deterministic")
    net = PackedNetwork.from_estimator(est, pre)
    got = c_predict(net.model, images, tmp_path)
    np.testing.assert_array_equal(est.classes_[got], ref)


@pytest.fixture(scope="module")
def deep():
    """784-256-256-10, the issue's microcontroller network (briefly trained)."""
    ds = load_dataset("mnist", mnist_dir(), download=False)
    pre = Preprocessor(scaling="unit").fit(ds.X_train, ds.max_value)
    est = EBPClassifier(hidden_layer_sizes=(256, 256), max_iter=1, random_state=0)
    est.fit(pre.transform(ds.X_train), ds.y_train)  # one epoch: about 85 % EBP-D accuracy
    return ds, pre, est


def test_integer_output_fold_equals_float_path_on_full_test_set(deep, tmp_path):
    # ebprop_predict's integer keys (output biases folded) vs the float EBP-D path, all 10,000
    ds, pre, est = deep
    X = ds.X_test
    ref = est.predict(pre.transform(X), readout="deterministic")
    net = PackedNetwork.from_estimator(est, pre)
    n = net.sizes[-2]
    mismatches = (n - net.integer_preactivations(X)[-1]) // 2
    fold = fold_output_bias(net.model.output_bias, n)
    np.testing.assert_array_equal(est.classes_[fold.predict_index(mismatches)], ref)
    assert (ref == ds.y_test).mean() > 0.7
    if CC is not None:  # and the integer-only C of both word sizes, compiled on the host
        for target in ("host", "cortex-m4"):
            got = c_predict(net.model, X, tmp_path / target, target=target)
            np.testing.assert_array_equal(est.classes_[got], ref)


@pytest.mark.skipif(bool(qemu.missing_tools()), reason="Cortex-M/QEMU tools missing")
@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m0plus"])
def test_cortex_qemu_1000_mnist_test_images(deep, tmp_path, target):
    ds, pre, est = deep
    images = ds.X_test[:1000].reshape(1000, -1)
    net = PackedNetwork.from_estimator(est, pre)
    write_c_project(net.model, tmp_path, target)
    sizes = qemu.build(tmp_path)
    r = qemu.run(tmp_path, images)
    np.testing.assert_array_equal(est.classes_[r.classes], net.predict(images))
    # the budget for 784-256-256-10: 40 KiB flash, 4 KiB RAM
    assert sizes["program"].flash <= 40 * 1024
    assert sizes["program"].data + sizes["program"].bss + r.stack_peak <= 4 * 1024
