"""The C export of binary CNNs, compiled with the host's compiler, against the packed runtime.

The runtime itself is tested against the spec and the core in test_packed_conv.py; here the
generated C of every target (host: 64-bit words; Cortex-M: 32-bit words, built by the host
compiler) must give the same class for every image.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
from packed_c_helper import CC, c_predict, requires_cc
from test_packed_conv import CASES, conv, dense, mp, random_network

from ebprop.exceptions import ModelFormatError
from ebprop.packed import PackedModel, PackedNetwork
from ebprop.packed.export_c import generate_c
from ebprop.packed.runtime import pack_conv_network

pytestmark = requires_cc


def _model(layers, shape, n_out, seed, max_value=255, scaling="unit"):
    rng = np.random.default_rng(seed)
    H, b = random_network(layers, shape, n_out, rng)
    prep = {
        "input": "uint8",
        "scaling": scaling,
        "max_value": max_value,
        "image_shape": list(shape),
    }
    model = pack_conv_network(layers, H, b, prep, np.arange(max(n_out, 2)))
    images = rng.integers(0, max_value + 1, size=(60, *shape), dtype=np.uint8)
    images[:20] *= rng.random((20, *shape)) < 0.3  # sparse images, as digits are
    images[0] = 0
    return model, images


@pytest.mark.parametrize("target", ["host", "cortex-m4", "cortex-m0plus"])
@pytest.mark.parametrize(("name", "layers", "shape", "n_out"), CASES, ids=[c[0] for c in CASES])
def test_conv_c_equals_packed_runtime(name, layers, shape, n_out, target, tmp_path):
    for seed in range(20):  # the first random network whose outputs differ between images
        model, images = _model(layers, shape, n_out, seed)
        expected = PackedNetwork(model).predict(images)
        if len(set(expected.tolist())) > 1:
            break
    got = c_predict(model, images.reshape(len(images), -1), tmp_path, target=target)
    np.testing.assert_array_equal(model.classes[got], expected)
    assert len(set(expected.tolist())) > 1  # the test can tell classes apart


@pytest.mark.parametrize("target", ["host", "cortex-m0plus"])
def test_conv_c_with_symmetric_scaling(target, tmp_path):
    # The same C, other first-layer thresholds (x = 2p/m − 1 folded in): still the runtime's class.
    layers = [conv(6, 3), mp(2), conv(8, 3, 1, 1), dense(10)]
    model, images = _model(layers, (12, 12), 4, 5, scaling="symmetric")
    expected = PackedNetwork(model).predict(images)
    assert len(set(expected.tolist())) > 1
    got = c_predict(model, images.reshape(len(images), -1), tmp_path, target=target)
    np.testing.assert_array_equal(model.classes[got], expected)


@pytest.mark.parametrize(
    "defines",
    [("-DEBPROP_POPCOUNT_TABLE",), ("-DEBPROP_POPCOUNT_SWAR",), ("-DEBPROP_PORTABLE_POPCOUNT",)],
)
def test_conv_c_popcount_variants(defines, tmp_path):
    layers = [conv(6, 3, 1, 1), mp(2), conv(40, 3, 2, 1), mp(2), dense(12)]
    model, images = _model(layers, (13, 12, 2), 5, 7)
    got = c_predict(model, images.reshape(len(images), -1), tmp_path, defines, "cortex-m4")
    np.testing.assert_array_equal(got, PackedNetwork(model).predict(images))


def test_conv_c_pool_after_pool_and_no_hidden_dense(tmp_path):
    layers = [conv(5, 3), mp(2), mp(2), conv(3, 1)]
    model, images = _model(layers, (14, 14), 4, 11, max_value=16)
    for target in ("host", "cortex-m0plus"):
        got = c_predict(model, images.reshape(len(images), -1), tmp_path / target, target=target)
        np.testing.assert_array_equal(got, PackedNetwork(model).predict(images))


@pytest.mark.parametrize("target", ["host", "cortex-m0plus"])
def test_conv_c_has_no_floating_point_and_documents_its_shape(target, tmp_path):
    model, _ = _model([conv(4, 3), mp(2), dense(6)], (8, 8, 3), 3, 1)
    h_text, c_text = generate_c(model, target)
    assert "#define EBPROP_IMAGE_CHANNELS 3" in h_text
    assert "(height, width, channels)" in h_text
    code = re.sub(r"/\*.*?\*/", "", c_text, flags=re.S)
    for word in ("float", "double", "malloc"):
        assert word not in code
    (tmp_path / "model.c").write_text(c_text)
    (tmp_path / "model.h").write_text(h_text)
    # -mgeneral-regs-only makes GCC reject any floating-point value or operation
    done = subprocess.run(
        [CC, "-std=c99", "-O2", "-Werror", "-mgeneral-regs-only", "-c", "model.c"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_conv_c_refuses_sums_that_could_overflow():
    # one 33x33 kernel over 4096 channels: 4.46M weights x 255 overflows 2^30
    n_rows = 33 * 33 * 4096
    model = PackedModel(
        sizes=(n_rows, 1, 3),
        weights=[np.zeros((1, -(-n_rows // 64)), np.uint64), np.zeros((3, 1), np.uint64)],
        thresholds=[np.zeros(1, np.int32)],
        output_bias=np.zeros(3, np.float32),
        classes=np.arange(3),
        preprocessing={
            "input": "uint8",
            "scaling": "unit",
            "max_value": 255,
            "image_shape": [33, 33, 4096],
        },
        layers=[conv(1, 33)],
    )
    with pytest.raises(ModelFormatError, match="too large for the C export's 32-bit sums"):
        generate_c(model)
