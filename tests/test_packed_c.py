"""The C99 export compiles, uses integers only, and predicts exactly what the float EBP-D path
predicts, for every target's word size, popcount and first-layer kernel."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from packed_c_helper import CC, c_predict, requires_cc

from ebprop import EBPClassifier
from ebprop.datasets import Preprocessor, load_dataset
from ebprop.exceptions import ModelFormatError
from ebprop.packed import PackedNetwork, pack_estimator
from ebprop.packed import pack as P
from ebprop.packed.export_c import c_string_literal, generate_c


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


@pytest.fixture(scope="module")
def two_layer(digits):
    return _fit(digits, (70, 30))  # 70 units: a layer spanning two 64-bit words, three 32-bit


VARIANTS = [
    ("host", ()),
    ("host", ("-DEBPROP_PORTABLE_POPCOUNT",)),
    ("host", ("-DEBPROP_POPCOUNT_TABLE", "-DEBPROP_FIRST_LAYER_PLANES")),
    ("cortex-m4", ()),
    ("cortex-m4", ("-DEBPROP_POPCOUNT_TABLE", "-DEBPROP_FIRST_LAYER_PLANES")),
    ("cortex-m0plus", ()),
    ("cortex-m0plus", ("-DEBPROP_POPCOUNT_SWAR", "-DEBPROP_FIRST_LAYER_PLANES")),
]


@requires_cc
@pytest.mark.parametrize("target, defines", VARIANTS)
def test_c_export_matches_float_path_on_1000_digits(digits, two_layer, tmp_path, target, defines):
    est, pre = two_layer
    images = np.concatenate([digits.X_test, digits.X_train])[:1000]
    ref = est.predict(pre.transform(images), readout="deterministic")
    got = c_predict(pack_estimator(est, pre), images, tmp_path, defines, target)
    np.testing.assert_array_equal(est.classes_[got], ref)


@requires_cc
def test_c_export_two_classes_one_hidden_layer_float64(digits, tmp_path):
    est, pre = _fit(digits, (12,), classes=[1, 7], dtype="float64")
    images = digits.X_test[np.isin(digits.y_test, [1, 7])]
    ref = est.predict(pre.transform(images, np.float64), readout="deterministic")
    got = c_predict(pack_estimator(est, pre), images, tmp_path)
    np.testing.assert_array_equal(est.classes_[got], ref)
    h, c = generate_c(pack_estimator(est, pre))
    assert "malloc" not in c and "EBPROP_N_CLASSES 2" in h


@requires_cc
@pytest.mark.parametrize("target", ["host", "cortex-m0plus"])
def test_ebprop_predict_compiles_without_floating_point(two_layer, tmp_path, target):
    # -mgeneral-regs-only makes GCC reject any floating-point value or operation
    est, pre = two_layer
    _, c = generate_c(pack_estimator(est, pre), target)
    code = re.sub(r"/\*.*?\*/", "", c, flags=re.S)
    for word in ("float", "double"):
        assert word not in code
    (tmp_path / "model.c").write_text(c)
    (tmp_path / "model.h").write_text(generate_c(pack_estimator(est, pre), target)[0])
    done = subprocess.run(
        [CC, "-std=c99", "-O2", "-Werror", "-mgeneral-regs-only", "-c", "model.c"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    if "unrecognized" in done.stderr:  # not GCC on x86/ARM: the token check above stands
        pytest.skip("this compiler has no -mgeneral-regs-only")
    assert done.returncode == 0, done.stderr


def test_generated_source_is_self_contained(digits):
    est, pre = _fit(digits, (20, 20))
    h, c = generate_c(PackedNetwork.from_estimator(est, pre).model)
    assert "int ebprop_predict(const uint8_t *pixels);" in h
    assert "#include <stdint.h>" in h and '#include "model.h"' in c
    includes = [line for line in c.splitlines() if line.startswith("#include")]
    assert includes == ['#include "model.h"']
    assert "malloc" not in c and "static const ebprop_word W0[" in c
    assert "typedef uint64_t ebprop_word;" in c and "__builtin_popcountll" in c
    _, c32 = generate_c(PackedNetwork.from_estimator(est, pre).model, "cortex-m0plus")
    assert "typedef uint32_t ebprop_word;" in c32 and "uint64" not in c32.replace("UINT64", "")
    assert "#define EBPROP_POPCOUNT_TABLE" in c32 and "ebprop_debruijn" in c32
    _, c4 = generate_c(PackedNetwork.from_estimator(est, pre).model, "cortex-m4")
    assert "#define EBPROP_NEXT_PIXEL(m) EBPROP_CLZ(m)" in c4 and "ebprop_debruijn" not in c4


def test_too_wide_models_and_unknown_targets_are_refused(digits):
    est, pre = _fit(digits, (8,))
    model = pack_estimator(est, pre)
    with pytest.raises(ModelFormatError, match="target must be one of"):
        generate_c(model, "cortex-a53")
    model.sizes = (64, 2**31, 10)
    with pytest.raises(ModelFormatError):
        generate_c(model)


# ---------------------------------------------------------------------------- output fold
def test_order_isomorphic_equals_pairwise_comparison():
    rng = np.random.default_rng(3)
    for _ in range(200):
        values = rng.integers(0, 4, size=(2, 3)).astype(np.float32)
        keys = rng.integers(0, 4, size=(2, 3))
        v, k = values.ravel(), keys.ravel()
        pairwise = all(
            np.sign(v[i] - v[j]) == np.sign(k[i] - k[j]) for i in range(6) for j in range(6)
        )
        assert P.order_isomorphic(values, keys) == pairwise


def _float_argmax(bias, n, mism):
    """The float path: fl(n − 2m + b) per class, first maximum (one unit: ≥ 0)."""
    v = (n - 2 * mism).astype(bias.dtype) + bias
    return (v[:, 0] >= 0).astype(np.intp) if bias.size == 1 else v.argmax(axis=1)


@pytest.mark.parametrize(
    "bias, kind",
    [
        (np.array([0.1, -0.3, 2.7, 0.5, -7.25], np.float32), "linear"),
        (np.array([0.5, 2.5, 0.5, -1.5], np.float32), "linear"),  # exact ties by even integers
        (np.array([0.5, 0.5 + 2**-23, -100], np.float32), "table"),  # ties only after rounding
        (np.array([3.0, -1.0 + 2**-40], np.float64), "table"),  # 2^-40 below the key's scale
        (np.array([3.0, -1.0 + 2**-10, 0.25], np.float64), "linear"),
        (np.array([-2.5], np.float32), "threshold"),
    ],
)
def test_output_fold_gives_the_float_argmax_for_every_mismatch_vector(bias, kind):
    n = 30
    fold = P.fold_output_bias(bias, n)
    assert fold.kind == kind
    rng = np.random.default_rng(0)
    mism = rng.integers(0, n + 1, size=(20_000, bias.size))
    mism[:5000, 1 % bias.size] = mism[:5000, 0]  # many equal dots: rounding decides
    np.testing.assert_array_equal(fold.predict_index(mism), _float_argmax(bias, n, mism))


@requires_cc
def test_c_export_with_rounding_ties_uses_the_rank_table(digits, tmp_path):
    # classes 0 and 1 get identical output weights, so their dots are equal and the float
    # rounding of d + 0.5 vs d + 0.5 + 2^-23 decides: class 1 for small |d|, a tie (class 0)
    # for large |d|. No linear integer key can do that; the rank table must.
    est, pre = _fit(digits, (30,))
    model = pack_estimator(est, pre)
    model.weights[-1][1] = model.weights[-1][0]
    model.output_bias = np.full(10, -100, np.float32)
    model.output_bias[:2] = [0.5, 0.5 + 2**-23]
    assert P.fold_output_bias(model.output_bias, 30).kind == "table"
    images = np.random.default_rng(0).integers(0, 17, size=(3000, 64), dtype=np.uint8)
    images[:1500] = np.concatenate([digits.X_test, digits.X_train])[:1500].reshape(1500, 64)
    ref = PackedNetwork(model).predict(images)
    assert set(np.unique(ref)) == {0, 1}  # both outcomes occur
    got = c_predict(model, images, tmp_path, target="cortex-m0plus")
    np.testing.assert_array_equal(model.classes[got], ref)


# ---------------------------------------------------------------------------- labels
LABELS = [
    "??=",
    "??/",
    "a??(b??)",
    'quote"',
    "back\\slash",
    "é",
    "日本",
    "\x01A",  # a hex escape \x01 followed by a hex digit would swallow it
    "\x7fF",
    "tab\there",
    "new\nline",
    "?",
    "plain",
]


@requires_cc
def test_class_labels_survive_c_string_escaping(tmp_path):
    body = ",\n".join(c_string_literal(x) for x in LABELS)
    (tmp_path / "labels.c").write_text(
        "#include <stdio.h>\n#include <string.h>\n"
        f"static const char *const labels[] = {{\n{body}\n}};\n"
        "int main(void)\n{\n    unsigned i;\n"
        "    for (i = 0; i < sizeof labels / sizeof labels[0]; ++i) {\n"
        "        fwrite(labels[i], 1, strlen(labels[i]), stdout);\n"
        "        putchar(0);\n    }\n    return 0;\n}\n"
    )
    # -std=c99 turns trigraphs on: ??= would silently become # without the escaping
    subprocess.run(
        [CC, "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-o", "labels", "labels.c"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    out = subprocess.run([str(tmp_path / "labels")], check=True, capture_output=True).stdout
    assert out.split(b"\0")[:-1] == [x.encode("utf-8") for x in LABELS]


def test_labels_a_c_string_cannot_hold_are_refused():
    with pytest.raises(ModelFormatError, match="NUL"):
        c_string_literal("a\0b")
    assert c_string_literal(3) == '"3"' and c_string_literal(2.5) == '"2.5"'
