"""The C99 export compiles and predicts exactly what the float EBP-D path predicts."""

from __future__ import annotations

import numpy as np
import pytest
from packed_c_helper import c_predict, requires_cc

from ebprop import EBPClassifier
from ebprop.datasets import Preprocessor, load_dataset
from ebprop.exceptions import ModelFormatError
from ebprop.packed import PackedNetwork, pack_estimator
from ebprop.packed.export_c import generate_c


def _fit(ds, hidden, classes=None, dtype="float32"):
    X, y = ds.X_train, ds.y_train
    if classes is not None:
        keep = np.isin(y, classes)
        X, y = X[keep], y[keep]
    pre = Preprocessor().fit(X, ds.max_value)
    est = EBPClassifier(hidden_layer_sizes=hidden, max_iter=2, random_state=1, dtype=dtype)
    return est.fit(pre.transform(X, np.dtype(dtype)), y), pre


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@requires_cc
@pytest.mark.parametrize("defines", [(), ("-DEBPROP_PORTABLE_POPCOUNT",)])
def test_c_export_matches_float_path_on_1000_digits(digits, tmp_path, defines):
    est, pre = _fit(digits, (70, 30))  # 70 units: a layer spanning two 64-bit words
    images = np.concatenate([digits.X_test, digits.X_train])[:1000]
    ref = est.predict(pre.transform(images), readout="deterministic")
    got = c_predict(pack_estimator(est, pre), images, tmp_path, defines)
    np.testing.assert_array_equal(est.classes_[got], ref)


@requires_cc
def test_c_export_two_classes_one_hidden_layer_float64(digits, tmp_path):
    est, pre = _fit(digits, (12,), classes=[1, 7], dtype="float64")
    images = digits.X_test[np.isin(digits.y_test, [1, 7])]
    ref = est.predict(pre.transform(images, np.float64), readout="deterministic")
    got = c_predict(pack_estimator(est, pre), images, tmp_path)
    np.testing.assert_array_equal(est.classes_[got], ref)
    h, c = generate_c(pack_estimator(est, pre))
    assert "double B_OUT" in c and "malloc" not in c and "EBPROP_N_CLASSES 2" in h


def test_generated_source_is_self_contained(digits):
    est, pre = _fit(digits, (20, 20))
    h, c = generate_c(PackedNetwork.from_estimator(est, pre).model)
    assert "int ebprop_predict(const uint8_t *pixels);" in h
    assert "#include <stdint.h>" in h and '#include "model.h"' in c
    includes = [line for line in c.splitlines() if line.startswith("#include")]
    assert includes == ['#include "model.h"']
    assert "malloc" not in c and "static const uint64_t W0[" in c
    assert "__builtin_popcountll" in c and "ebprop_popcount64" in c


def test_too_wide_models_are_refused(digits):
    est, pre = _fit(digits, (8,))
    model = pack_estimator(est, pre)
    model.sizes = (64, 2**31, 10)
    with pytest.raises(ModelFormatError):
        generate_c(model)
