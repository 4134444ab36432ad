"""The packed runtime of binary CNNs against a straightforward transcription of CONV_SPEC.md.

The reference below is written from the spec alone, in float64 loops over output positions:
W = sign(H) (sign(0) = +1), x = p / max_value on the first layer, zero padding, hidden units
+1 iff pre-activation ≥ 0, max-pool of ±1 units, flatten (y, x, c), linear output + argmax.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib

import numpy as np
import pytest

from ebprop.exceptions import ModelFormatError
from ebprop.packed import PackedModel, PackedNetwork, read_packed, write_packed
from ebprop.packed.conv import layers_text, plan, weight_count
from ebprop.packed.fileformat import decode_packed, encode_packed
from ebprop.packed.runtime import pack_conv_network


def conv(n, k, s=1, p=0):
    return {"kind": "conv", "channels": n, "kernel": k, "stride": s, "pad": p}


def mp(k):
    return {"kind": "maxpool", "size": k}


def dense(n):
    return {"kind": "dense", "units": n}


def reference_forward(layers, H, b, pixels, max_value):
    """EBP-D of a CNN, per the spec: (linear outputs (n, n_L), [sums before the bias],
    [pre-activations])."""
    x = pixels.astype(np.float64) / max_value  # (n, h, w, c)
    sums, pres, param = [], [], 0
    for layer in layers + [dense(H[-1].shape[1])]:
        if layer["kind"] == "conv":
            k, s, p = layer["kernel"], layer["stride"], layer["pad"]
            n, h, w, c = x.shape
            W = np.where(H[param] >= 0, 1.0, -1.0).reshape(k, k, c, -1)
            xp = np.zeros((n, h + 2 * p, w + 2 * p, c))
            xp[:, p : p + h, p : p + w] = x
            ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            pre = np.empty((n, ho, wo, W.shape[3]))
            for i in range(ho):
                for j in range(wo):
                    patch = xp[:, i * s : i * s + k, j * s : j * s + k, :]
                    pre[:, i, j] = np.einsum("nabc,abcd->nd", patch, W)
        elif layer["kind"] == "maxpool":
            k = layer["size"]
            n, h, w, c = x.shape
            ho, wo = h // k, w // k
            x = x[:, : ho * k, : wo * k].reshape(n, ho, k, wo, k, c).max(axis=(2, 4))
            continue
        else:
            x = x.reshape(x.shape[0], -1)
            pre = x @ np.where(H[param] >= 0, 1.0, -1.0)
        sums.append(pre)
        pre = pre + b[param]
        pres.append(pre)
        x = np.where(pre >= 0, 1.0, -1.0)
        param += 1
    return pres[-1], sums, pres


def random_network(layers, image_shape, n_out, rng, max_value=255):
    """Random H and b whose units fire about half the time (biases at the sums' scale)."""
    stages = plan(layers, list(image_shape), n_out)
    H, b = [], []
    for st in stages:
        if st.param < 0:
            continue
        H.append(rng.normal(size=(st.n_rows, st.n_out)))
        scale = np.sqrt(st.n_rows) * (0.3 if st.param == 0 else 1.0)
        bias = rng.normal(scale=scale, size=st.n_out)
        if st.param > 0:  # exact integer biases: s + b = 0 exactly must fire (sign(0) = +1)
            bias[::3] = np.round(bias[::3])
        b.append(bias)
    return H, b


CASES = [
    ("plain", [conv(4, 3)], (8, 8), 3),
    ("pool", [conv(6, 3), mp(2), conv(5, 3), dense(7)], (10, 10), 4),
    ("stride_pad", [conv(5, 3, 2, 1), conv(3, 2, 1, 1), mp(2), dense(9)], (11, 9), 5),
    ("rgb_pad", [conv(70, 3, 1, 2), mp(3), conv(66, 2), dense(20), dense(8)], (7, 8, 3), 6),
    ("two_classes", [conv(3, 5, 1, 2), mp(2)], (6, 6, 2), 1),
    ("wide_channels", [conv(130, 1), conv(65, 3, 2, 2)], (5, 5), 10),
    ("all_padding_windows", [conv(4, 3), conv(3, 2, 1, 3), dense(6)], (7, 7), 3),
]


@pytest.mark.parametrize(("name", "layers", "shape", "n_out"), CASES, ids=[c[0] for c in CASES])
def test_conv_runtime_equals_reference(name, layers, shape, n_out, tmp_path):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    H, b = random_network(layers, shape, n_out, rng)
    classes = np.arange(max(n_out, 2))
    prep = {"input": "uint8", "scaling": "unit", "max_value": 255, "image_shape": list(shape)}
    model = pack_conv_network(layers, H, b, prep, classes, dtype="float64")
    assert weight_count(model) == sum(h.size for h in H)
    net = PackedNetwork(model)
    images = rng.integers(0, 256, size=(37, *shape), dtype=np.uint8)
    images[0] = 0  # a black image: every first-layer sum is 0
    images[1] = 255
    full = images if len(shape) == 3 else images[..., None]
    out, sums, pres = reference_forward(layers, H, b, full, 255)
    dots = net.integer_preactivations(images)
    assert len(dots) == len(pres)
    np.testing.assert_allclose(dots[0] / 255, sums[0], rtol=0, atol=1e-9)
    for s, ref in zip(dots[1:], sums[1:], strict=True):
        np.testing.assert_array_equal(s, ref)  # integer sums over the valid taps
    # hidden decisions identical, layer by layer, and fired/not fired both occur
    for s, pre, t in zip(dots[:-1], pres[:-1], model.thresholds, strict=True):
        np.testing.assert_array_equal(s >= t, pre >= 0)
        assert 0.05 < (pre >= 0).mean() < 0.95
    np.testing.assert_allclose(net.decision_function(images), out[:, 0] if n_out == 1 else out)
    expected = (out[:, 0] >= 0).astype(int) if n_out == 1 else out.argmax(axis=1)
    np.testing.assert_array_equal(net.predict(images), classes[expected])
    # the file round trip keeps everything
    write_packed(tmp_path / "m.ebpb", model)
    again = PackedNetwork(read_packed(tmp_path / "m.ebpb"))
    assert again.model.layers == layers
    flat = images.reshape(len(images), -1)
    np.testing.assert_array_equal(again.predict(flat), net.predict(images))


@pytest.mark.parametrize("max_value", [255, 16])
def test_symmetric_scaling_folds_into_the_first_thresholds(max_value):
    # x = 2p/m − 1: the same integer sums s = Σ w·p, decided against other thresholds; every
    # decision of the packed network equals the real-valued sign network on x.
    rng = np.random.default_rng(max_value)
    layers = [conv(6, 3), mp(2), conv(5, 3, 1, 1), dense(7)]
    H, b = random_network(layers, (10, 10), 4, rng)
    b[0] = rng.normal(scale=2.0, size=b[0].shape)  # x-space biases: units fire about half the time
    prep = {
        "input": "uint8",
        "scaling": "symmetric",
        "max_value": max_value,
        "image_shape": [10, 10],
    }
    model = pack_conv_network(layers, H, b, prep, np.arange(4), dtype="float64")
    images = rng.integers(0, max_value + 1, size=(41, 10, 10), dtype=np.uint8)
    x = 2.0 * images[..., None].astype(np.float64) / max_value - 1.0
    out, _, pres = reference_forward(layers, H, b, x, 1)  # the reference on x itself
    net = PackedNetwork(model)
    dots = net.integer_preactivations(images)
    for s, pre, t in zip(dots[:-1], pres[:-1], model.thresholds, strict=True):
        np.testing.assert_array_equal(s >= t, pre >= 0)
        assert 0.05 < (pre >= 0).mean() < 0.95
    np.testing.assert_array_equal(net.predict(images), out.argmax(axis=1))


def test_first_layer_threshold_is_exact_at_a_tie():
    # b0 = -s/m exactly representable only through the Fraction rule: p = 1 under a +1 weight
    layers = [conv(1, 1)]
    H = [np.ones((1, 1)), np.ones((4, 1))]
    prep = {"input": "uint8", "scaling": "unit", "max_value": 4, "image_shape": [2, 2]}
    b = [np.array([-0.25]), np.array([0.0])]  # fires iff p/4 - 0.25 >= 0 iff p >= 1
    model = pack_conv_network(layers, H, b, prep, [0, 1], dtype="float64")
    assert int(model.thresholds[0][0]) == 1
    x = np.array([[[0, 1], [2, 0]]], dtype=np.uint8)
    (dots,) = PackedNetwork(model).integer_preactivations(x)[:1]
    np.testing.assert_array_equal(dots[0, :, :, 0], [[0, 1], [2, 0]])


def test_conv_pack_errors():
    rng = np.random.default_rng(0)
    layers = [conv(4, 3), mp(2)]
    H, b = random_network(layers, (6, 6), 3, rng)
    prep = {"input": "uint8", "scaling": "unit", "max_value": 255, "image_shape": [6, 6]}
    padded = [conv(4, 3, 1, 1), mp(2)]
    Hp, bp = random_network(padded, (6, 6), 3, rng)
    with pytest.raises(ModelFormatError, match=r"'symmetric' with a zero-padded first conv"):
        pack_conv_network(padded, Hp, bp, {**prep, "scaling": "symmetric"}, [0, 1, 2])
    with pytest.raises(ModelFormatError, match=r"scaling 'standard' is not one of"):
        pack_conv_network(layers, H, b, {**prep, "scaling": "standard"}, [0, 1, 2])
    with pytest.raises(ModelFormatError, match=r"layer 0 \(conv\) has weights of shape \(8, 4\)"):
        pack_conv_network(layers, [H[0][:8]] + H[1:], b, prep, [0, 1, 2])
    with pytest.raises(ModelFormatError, match="need 2 weight matrices"):
        pack_conv_network(layers, H[:1], b[:1], prep, [0, 1, 2])


@pytest.mark.parametrize(
    ("layers", "shape", "message"),
    [
        ([], [4, 4], "layers must be a non-empty list"),
        ([mp(2)], [4, 4], r"layers\[0\] is a maxpool; a conv model's first layer must be a conv"),
        ([conv(2, 3), dense(4), conv(2, 1)], [4, 4], r"layers\[2\] is a conv after a dense"),
        ([conv(2, 5)], [4, 4], r"layers\[0\] a 5x5 kernel does not fit its 4x4 input"),
        ([conv(2, 3), mp(3)], [4, 4], r"layers\[1\] pool size 3 must be an integer in 1..2"),
        ([{"kind": "conv", "channels": 2}], [4, 4], r"layers\[0\] \(conv\) must have exactly"),
        ([{"kind": "pool"}], [4, 4], r"layers\[0\] must be an object whose kind"),
        ([conv(0, 3)], [4, 4], r"channels 0 in 1\.\."),
        ([conv(2, 3, 0)], [4, 4], "stride 0 must be integers"),
        ([conv(2, 1), dense(True)], [4, 4], "units True must be an integer"),
        ([conv(2, 1)], [4, 0], "image_shape must be"),
    ],
)
def test_layer_list_errors(layers, shape, message):
    with pytest.raises(ModelFormatError, match=message):
        plan(layers, shape, 3, "m.ebpb")


# ------------------------------------------------------------------------------- the .ebpb file
def _reseal(data: bytes, header_fn) -> bytes:
    """A valid file with its JSON header rewritten, lengths and checksum recomputed."""
    magic, version, bom, h_len, _, _ = struct.unpack_from("<8sHHIQ32s", data)
    header = json.loads(data[56 : 56 + h_len])
    header_fn(header)
    text = json.dumps(header).encode()
    body = text + data[56 + h_len :]
    digest = hashlib.sha256(body).digest()
    return (
        struct.pack("<8sHHIQ32s", magic, version, bom, len(text), len(body) - len(text), digest)
        + body
    )


@pytest.fixture(scope="module")
def conv_bytes():
    layers = [conv(4, 3, 1, 1), mp(2), dense(5)]
    H, b = random_network(layers, (6, 6), 3, np.random.default_rng(3))
    prep = {"input": "uint8", "scaling": "unit", "max_value": 255, "image_shape": [6, 6]}
    return encode_packed(pack_conv_network(layers, H, b, prep, [0, 1, 2]))


def _layer(i, key, value):
    def fn(h):
        h["layers"][i][key] = value

    return fn


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            _layer(0, "channels", 5),
            r"sizes \[36, 36, 5, 3\] do not match the layers \(expected \[36, 45, 5, 3\]\)",
        ),
        (
            _layer(0, "pad", 0),
            r"\(expected \[36, 16, 5, 3\]\)",
        ),
        (_layer(1, "size", 7), r"m\.ebpb: layers\[1\] pool size 7"),
        (lambda h: h["layers"][0].update(kernel=1, pad=0), "weights_0 has non-zero padding"),
        (_layer(2, "units", 6), r"\(expected \[36, 36, 6, 3\]\)"),
        (lambda h: h.update(layers={}), "layers must be a non-empty list"),
        (lambda h: h["layers"].pop(), r"sizes .* do not match the layers"),
        (lambda h: h["preprocessing"].update(scaling="symmetric"), "a zero-padded first conv"),
        (lambda h: h["preprocessing"].update(image_shape=[6, 6, 2]), "image_shape"),
        (lambda h: h["preprocessing"].update(image_shape=[6, 6, True]), "image_shape"),
        (lambda h: h["preprocessing"].update(image_shape=[3, 12]), "sizes .* do not match"),
        (lambda h: h.update(sizes=[36, 36, 5, 5, 3]), "arrays .* differ from the expected"),
    ],
)
def test_conv_headers_are_validated(conv_bytes, mutate, message):
    with pytest.raises(ModelFormatError, match=message):
        decode_packed(_reseal(conv_bytes, mutate), "m.ebpb")


def test_conv_layers_need_format_version_2(conv_bytes):
    def as_v1(h):
        del h["class_names"]

    data = bytearray(_reseal(conv_bytes, as_v1))
    data[8:10] = struct.pack("<H", 1)
    with pytest.raises(ModelFormatError, match="version-1 file cannot hold a convolutional"):
        decode_packed(bytes(data))


def test_conv_file_round_trip_and_mlp_files_have_no_layers(conv_bytes):
    model = decode_packed(conv_bytes)
    assert [x["kind"] for x in model.layers] == ["conv", "maxpool", "dense"]
    assert model.sizes == (36, 36, 5, 3)
    assert encode_packed(model) == conv_bytes
    mlp = PackedModel(
        sizes=(4, 3, 3),
        weights=[np.zeros((3, 1), np.uint64), np.zeros((3, 1), np.uint64)],
        thresholds=[np.zeros(3, np.int16)],
        output_bias=np.zeros(3, np.float32),
        classes=np.arange(3),
        preprocessing={"input": "uint8", "scaling": "unit", "max_value": 9, "image_shape": [2, 2]},
    )
    data = encode_packed(mlp)
    assert b'"layers"' not in data and decode_packed(data).layers is None


# ----------------------------------------------------------------- against the core's EBP-D
@pytest.mark.parametrize(("name", "layers", "shape", "n_out"), CASES, ids=[c[0] for c in CASES])
def test_conv_runtime_equals_core_predict_deterministic(name, layers, shape, n_out):
    from ebprop.core.architecture import DenseSpec, parse_architecture
    from ebprop.core.convnet import ConvNetwork
    from ebprop.core.families import make_family
    from ebprop.core.predict import predict_deterministic

    rng = np.random.default_rng(zlib.crc32(name.encode()) + 1)
    H, b = random_network(layers, shape, n_out, rng)
    tokens = [
        f"{x['channels']}C{x['kernel']}s{x['stride']}p{x['pad']}"
        if x["kind"] == "conv"
        else f"MP{x['size']}"
        if x["kind"] == "maxpool"
        else str(x["units"])
        for x in layers
    ]
    specs = parse_architecture("-".join(tokens))
    full_shape = tuple(shape) + (1,) * (3 - len(shape))
    net = ConvNetwork(make_family("binary"), specs + (DenseSpec(n_out),), full_shape, H, b)
    prep = {"input": "uint8", "scaling": "unit", "max_value": 200, "image_shape": list(shape)}
    model = pack_conv_network(specs, H, b, prep, np.arange(max(n_out, 2)), dtype="float64")
    images = rng.integers(0, 201, size=(29, *shape), dtype=np.uint8)
    features = images.reshape(len(images), -1).astype(np.float64) / 200
    expected = predict_deterministic(net, features)
    out = PackedNetwork(model).decision_function(images)
    np.testing.assert_array_equal(out, expected[:, 0] if n_out == 1 else expected)


def test_conv_array_errors():
    from ebprop.packed.conv import check_arrays

    layers = [conv(4, 3, 1, 1), mp(2), dense(5)]
    H, b = random_network(layers, (6, 6), 3, np.random.default_rng(3))
    prep = {"input": "uint8", "scaling": "unit", "max_value": 255, "image_shape": [6, 6]}
    model = pack_conv_network(layers, H, b, prep, [0, 1, 2])
    stages = plan(layers, [6, 6], 3)
    w, t = model.weights, model.thresholds
    with pytest.raises(ModelFormatError, match="m: the layers need 3 weight arrays and 2"):
        check_arrays(stages, w[:2], t, "m")
    with pytest.raises(
        ModelFormatError, match=r"weights_1 has shape \(5, 2\) \(uint64\), expected"
    ):
        check_arrays(stages, [w[0], np.zeros((5, 2), np.uint64), w[2]], t, "m")
    with pytest.raises(ModelFormatError, match=r"thresholds_0 has shape \(4,\) \(int8\)"):
        check_arrays(stages, w, [t[0].astype(np.int8), t[1]], "m")
    check_arrays(stages, w, t, "m")  # the packer's own arrays pass


def test_layers_text_names_the_network():
    layers = [conv(5, 3, 2, 1), conv(3, 2), mp(2), dense(9)]
    H, b = random_network(layers, (11, 9), 4, np.random.default_rng(0))
    prep = {"input": "uint8", "scaling": "unit", "max_value": 255, "image_shape": [11, 9]}
    model = pack_conv_network(layers, H, b, prep, np.arange(4))
    assert layers_text(model) == "5C3s2p1-3C2-MP2-9-4"
    model.layers = None  # as an MLP's file reads: its sizes
    assert layers_text(model) == "-".join(map(str, model.sizes))
