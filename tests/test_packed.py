"""Packed EBP-D runtime: exact agreement with the float path, thresholds, the .ebpb format."""

from __future__ import annotations

import hashlib
import json
import struct
from fractions import Fraction

import numpy as np
import pytest

from ebprop import EBPClassifier
from ebprop.datasets import Preprocessor, load_dataset
from ebprop.exceptions import DataError, ModelFormatError
from ebprop.packed import PackedNetwork, pack_estimator, read_packed
from ebprop.packed import pack as P
from ebprop.packed.fileformat import decode_packed, encode_packed


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _fit(ds, hidden=(40, 30), scaling="unit", classes=None, seed=0, dtype="float32"):
    X, y = ds.X_train, ds.y_train
    if classes is not None:
        keep = np.isin(y, classes)
        X, y = X[keep], y[keep]
    pre = Preprocessor(scaling=scaling).fit(X, ds.max_value)
    est = EBPClassifier(hidden_layer_sizes=hidden, max_iter=2, random_state=seed, dtype=dtype)
    est.fit(pre.transform(X, np.dtype(dtype)), y)
    return est, pre


@pytest.fixture(scope="module")
def model(digits):
    return _fit(digits)


# ---------------------------------------------------------------------------- bit packing
def test_pack_roundtrip_and_zero_padding():
    rng = np.random.default_rng(0)
    for n in (1, 63, 64, 65, 130):
        bits = rng.random((5, n)) < 0.5
        words = P.pack_bits(bits)
        assert words.shape == (5, P.n_words(n)) and words.dtype == np.uint64
        assert P.padding_is_zero(words, n)
        np.testing.assert_array_equal(P.unpack_bits(words, n), bits)
    # bit j of word j // 64, little-endian: element 0 is the lowest bit, element 64 the next word
    one = np.zeros((1, 65), bool)
    one[0, [0, 64]] = True
    np.testing.assert_array_equal(P.pack_bits(one), [[1, 1]])


def test_binary_dot_equals_float_dot_and_ignores_padding():
    rng = np.random.default_rng(1)
    n = 70  # 2 words, 58 padding bits
    a = rng.random((6, n)) < 0.5
    w = rng.random((4, n)) < 0.5
    ref = np.where(a, 1, -1) @ np.where(w, 1, -1).T
    np.testing.assert_array_equal(P.binary_dot(P.pack_bits(a), P.pack_bits(w), n), ref)


def test_pixel_dot_bit_planes_match_integer_matmul():
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (7, 100), dtype=np.uint8)
    w = rng.random((9, 100)) < 0.5
    ref = pixels.astype(np.int64) @ np.where(w, 1, -1).T
    np.testing.assert_array_equal(P.pixel_dot(pixels, P.pack_bits(w)), ref)


# ---------------------------------------------------------------------------- thresholds
def test_hidden_thresholds_reproduce_float_sign_with_sign0_plus():
    # s + b >= 0 (float32, as the float path computes it) <=> s >= T, for every s in range.
    rng = np.random.default_rng(3)
    b = np.concatenate(
        [
            np.array([0.0, -0.0, 0.5, -0.5, 3.0, -3.0, 1e-30, -1e-30, 799.5, -801.0], np.float32),
            rng.normal(0, 5, 200).astype(np.float32),
        ]
    )
    T = np.array(P.hidden_thresholds(b))
    s = np.arange(-801, 802, dtype=np.float32)
    float_fires = (s[:, None] + b[None, :]) >= 0
    np.testing.assert_array_equal(float_fires, s[:, None] >= T[None, :])
    assert P.hidden_thresholds(np.array([0.5, -0.5, 1e30]))[:2] == [0, 1]
    assert (
        P.hidden_thresholds(np.array([-1e30]))[0] == 10**30
        or P.hidden_thresholds(np.array([-1e30]))[0] > 10**29
    )


@pytest.mark.parametrize("scaling", ["unit", "symmetric"])
def test_pixel_thresholds_equal_exact_rational_decision(scaling):
    rng = np.random.default_rng(4)
    m = 255
    b = rng.normal(0, 2, 50)
    b[:3] = [0.0, -2 / 255, 1 / 3]
    wsum = rng.integers(-50, 51, 50)
    T = P.pixel_thresholds(b, wsum, m, scaling)
    for s in range(-600, 601, 7):
        for k in range(50):
            x = Fraction(s, m) + Fraction(float(b[k]))
            if scaling == "symmetric":
                x = Fraction(2 * s - m * int(wsum[k]), m) + Fraction(float(b[k]))
            assert (x >= 0) == (s >= T[k])
    with pytest.raises(ValueError, match="scaling must be"):
        P.pixel_thresholds(b, wsum, m, "standard")


def test_clip_thresholds_keeps_decisions_and_fits_int():
    t = P.clip_thresholds([10**40, -(10**40), 5], -100, 100)
    np.testing.assert_array_equal(t, [101, -100, 5])
    assert P.smallest_int_dtype(-800, 801) == np.int16
    assert P.smallest_int_dtype(-200_000, 200_001) == np.int32
    with pytest.raises(ValueError, match="does not fit"):
        P.smallest_int_dtype(0, 2**70)


# ---------------------------------------------------------------------------- exactness
def _float64_reference(est, pixels, m):
    """Layer-by-layer float64 EBP-D: first-layer pixel sums and pre-activations."""
    W = [np.where(np.asarray(c) >= 0, 1.0, -1.0) for c in est.coefs_]
    b = [np.asarray(i, np.float64) for i in est.intercepts_]
    x = pixels.reshape(len(pixels), -1).astype(np.float64)
    sums = [x @ W[0]]  # exact: integers below 2**53
    h = np.where(sums[0] / m + b[0] >= 0, 1.0, -1.0)
    for layer in range(1, len(W)):
        sums.append(h @ W[layer])
        h = np.where(sums[-1] + b[layer] >= 0, 1.0, -1.0)
    return sums


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_predictions_equal_float_ebp_d_on_digits(model, digits, backend):
    est, pre = model
    net = PackedNetwork.from_estimator(est, pre, backend=backend)
    for X in (digits.X_test, digits.X_train):
        ref = est.predict(pre.transform(X), readout="deterministic")
        np.testing.assert_array_equal(net.predict(X), ref)
        np.testing.assert_array_equal(
            net.decision_function(X), est.decision_function(pre.transform(X), "deterministic")
        )


def test_integer_preactivations_equal_float_path(model, digits):
    est, pre = model
    net = PackedNetwork.from_estimator(est, pre)
    X = np.concatenate([digits.X_train, digits.X_test])
    ints = net.integer_preactivations(X)
    ref = _float64_reference(est, X, digits.max_value)
    assert len(ints) == len(ref) == 3
    for got, want in zip(ints, ref, strict=True):
        assert np.issubdtype(got.dtype, np.integer)
        np.testing.assert_array_equal(got, want.astype(np.int64))
    # and the threshold decision equals the float32 sign decision of the estimator's own path
    X32 = pre.transform(X)
    W0 = np.where(est.coefs_[0] >= 0, 1, -1).astype(np.float32)
    float_fires = (X32 @ W0 + est.intercepts_[0]) >= 0
    np.testing.assert_array_equal(ints[0] >= net.model.thresholds[0], float_fires)


def test_symmetric_scaling_and_float64_model(digits):
    for scaling, dtype in (("symmetric", "float32"), ("unit", "float64")):
        est, pre = _fit(digits, hidden=(25,), scaling=scaling, dtype=dtype)
        net = PackedNetwork.from_estimator(est, pre)
        assert net.model.output_bias.dtype == np.dtype(dtype)
        ref = est.predict(pre.transform(digits.X_test, np.dtype(dtype)), readout="deterministic")
        np.testing.assert_array_equal(net.predict(digits.X_test), ref)


def test_two_class_single_output(digits):
    est, pre = _fit(digits, hidden=(20,), classes=[3, 8])
    assert est.n_outputs_ == 1
    net = PackedNetwork.from_estimator(est, pre)
    X = digits.X_test[np.isin(digits.y_test, [3, 8])]
    ref = est.predict(pre.transform(X), readout="deterministic")
    np.testing.assert_array_equal(net.predict(X), ref)
    assert set(np.unique(net.predict(X))) <= {3, 8}
    assert net.decision_function(X).shape == (len(X),)


def test_ties_and_zero_biases_follow_sign0_plus_and_first_argmax(digits):
    # Zero biases and all-zero images: every first-layer sum is 0 -> every unit +1; equal
    # output weights give tied outputs -> argmax picks the first class, as the float path does.
    est, pre = _fit(digits, hidden=(16,))
    est.intercepts_ = [np.zeros_like(b) for b in est.intercepts_]
    est.coefs_[1] = np.ones_like(est.coefs_[1])
    blank = np.zeros((3, 8, 8), np.uint8)
    net = PackedNetwork.from_estimator(est, pre)
    ref = est.predict(pre.transform(blank), readout="deterministic")
    np.testing.assert_array_equal(net.predict(blank), ref)
    assert (net.predict(blank) == est.classes_[0]).all()


# ---------------------------------------------------------------------------- refusals
def test_refuses_models_it_cannot_reproduce(digits, model):
    est, pre = model
    with pytest.raises(ModelFormatError, match="no preprocessor"):
        pack_estimator(est, None)
    for kwargs, word in (
        ({"scaling": "standard"}, "scaling"),
        ({"filters": "sobel"}, "filters"),
        ({"deskew": True}, "deskew"),
        ({"scaling": "binary"}, "scaling"),
    ):
        other = Preprocessor(**kwargs).fit(digits.X_train, digits.max_value)
        with pytest.raises(ModelFormatError, match=word):
            pack_estimator(est, other)
    real = EBPClassifier(hidden_layer_sizes=(5,), weights="real", max_iter=1, random_state=0)
    real.fit(pre.transform(digits.X_train[:100]), digits.y_train[:100])
    with pytest.raises(ModelFormatError, match="only binary-weight"):
        pack_estimator(real, pre)
    flat = EBPClassifier(hidden_layer_sizes=(), max_iter=1, random_state=0)
    flat.fit(pre.transform(digits.X_train[:100]), digits.y_train[:100])
    with pytest.raises(ModelFormatError, match="at least one hidden layer"):
        pack_estimator(flat, pre)
    with pytest.raises(ModelFormatError, match="not fitted"):
        pack_estimator(EBPClassifier(), pre)
    with pytest.raises(ValueError, match="backend"):
        PackedNetwork.from_estimator(est, pre, backend="gpu")


def test_pixel_input_validation(model, digits):
    est, pre = model
    net = PackedNetwork.from_estimator(est, pre)
    one = digits.X_test[0]
    np.testing.assert_array_equal(net.predict(one), net.predict(one.reshape(1, 64)))
    np.testing.assert_array_equal(net.predict(one.astype(np.int64)[None]), net.predict(one[None]))
    with pytest.raises(DataError, match="this model takes 8x8"):
        net.predict(np.zeros((2, 9, 9), np.uint8))
    with pytest.raises(DataError, match="pixels must have shape"):
        net.predict(np.zeros((2, 65), np.uint8))
    with pytest.raises(DataError, match="raw integer values"):
        net.predict(np.zeros((2, 64), np.float32))
    with pytest.raises(DataError, match="exceeds this model's max_value 16"):
        net.predict(np.full((1, 64), 17, np.uint8))
    with pytest.raises(DataError, match="outside"):
        net.predict(np.full((1, 64), -1, np.int64))


# ---------------------------------------------------------------------------- the file
def test_roundtrip_export_load_predict(model, digits, tmp_path):
    est, pre = model
    net = PackedNetwork.from_estimator(est, pre)
    path = tmp_path / "m.ebpb"
    size = net.save(path)
    assert path.stat().st_size == size
    back = PackedNetwork.load(path)
    assert back.sizes == net.sizes
    np.testing.assert_array_equal(back.classes_, est.classes_)
    np.testing.assert_array_equal(back.predict(digits.X_test), net.predict(digits.X_test))
    for a, b in zip(back.model.weights, net.model.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert back.model.preprocessing == {
        "input": "uint8",
        "scaling": "unit",
        "max_value": 16,
        "image_shape": [8, 8],
    }
    assert net.weight_nbytes == sum(w.nbytes for w in net.model.weights)


def _reseal(data: bytes, header_fn=None, payload_fn=None) -> bytes:
    """Rewrite a valid file's header/payload and recompute lengths and checksum."""
    magic, version, bom, h_len, p_len, _ = struct.unpack_from("<8sHHIQ32s", data)
    header = json.loads(data[56 : 56 + h_len])
    payload = bytearray(data[56 + h_len :])
    if header_fn:
        header_fn(header)
    if payload_fn:
        payload_fn(header, payload)
    text = json.dumps(header).encode()
    body = text + bytes(payload)
    pre = struct.pack(
        "<8sHHIQ32s", magic, version, bom, len(text), len(payload), hashlib.sha256(body).digest()
    )
    return pre + body


@pytest.fixture(scope="module")
def good_bytes(model):
    est, pre = model
    return encode_packed(pack_estimator(est, pre))


def test_valid_bytes_decode(good_bytes):
    assert decode_packed(good_bytes).sizes == (64, 40, 30, 10)
    assert decode_packed(_reseal(good_bytes)).sizes == (64, 40, 30, 10)


@pytest.mark.parametrize("cut", [0, 10, 55, 56, 200, -1])
def test_truncated_files_are_refused(good_bytes, cut, tmp_path):
    path = tmp_path / "cut.ebpb"
    path.write_bytes(good_bytes[:cut])
    with pytest.raises(ModelFormatError, match="too short|truncated"):
        read_packed(path)


def test_corrupt_files_are_refused(good_bytes):
    flipped = bytearray(good_bytes)
    flipped[-5] ^= 0x10
    with pytest.raises(ModelFormatError, match="checksum mismatch"):
        decode_packed(bytes(flipped))
    with pytest.raises(ModelFormatError, match="trailing bytes"):
        decode_packed(good_bytes + b"\0")
    with pytest.raises(ModelFormatError, match="bad magic"):
        decode_packed(b"PK\x03\x04" + good_bytes[4:])
    v3 = bytearray(good_bytes)
    v3[8:10] = struct.pack("<H", 3)
    with pytest.raises(ModelFormatError, match="format version 3 is not supported"):
        decode_packed(bytes(v3))
    be = bytearray(good_bytes)
    be[10:12] = b"\xfe\xff"
    with pytest.raises(ModelFormatError, match="big-endian"):
        decode_packed(bytes(be))
    be[10:12] = b"\x00\x00"
    with pytest.raises(ModelFormatError, match="byte-order mark"):
        decode_packed(bytes(be))


def _set(key, value):
    def fn(h):
        h[key] = value

    return fn


def _set_pre(key, value):
    def fn(h):
        h["preprocessing"][key] = value

    return fn


def _array(name, key, value):
    def fn(h):
        next(a for a in h["arrays"] if a["name"] == name)[key] = value

    return fn


def _drop(key):
    def fn(h):
        del h[key]

    return fn


@pytest.mark.parametrize(
    "mutate, message",
    [
        (_drop("sizes"), "lacks 'sizes'"),
        (_set("format", "other"), "format is"),
        (_set("byte_order", "big"), "byte_order"),
        (_set("word_bits", 32), "word_bits"),
        (_set("sizes", [64, 10]), "sizes must list"),
        (_set("sizes", [64, 41, 30, 10]), "weights_0 has shape"),
        (_set("output_dtype", "float16"), "output_dtype"),
        (_set("classes", [0]), "at least 2"),
        (_set("classes", list(range(9))), "do not fit 9 classes"),
        (_set("classes", [0, "a"] + list(range(2, 10))), "share one type"),
        (_set("classes", [None] * 10), "numbers or strings"),
        (_set_pre("scaling", "standard"), "not supported"),
        (_set_pre("max_value", 300), "max_value"),
        (_set_pre("image_shape", [7, 8]), "image_shape"),
        (_set_pre("input", "float32"), "input must be"),
        (_array("weights_0", "shape", [40, 2]), "do not match shape"),
        (_array("weights_0", "offset", 10**9), "runs past the payload"),
        (_array("weights_0", "dtype", ">u8"), "not a little-endian"),
        (_array("weights_0", "dtype", "x9"), "bad dtype"),
        (_array("weights_0", "name", "weights_9"), "differ from the expected"),
        (_array("thresholds_0", "dtype", "<u2"), "thresholds_0 has shape"),
        (_array("output_bias", "dtype", "<f8"), "do not match shape"),
        (_set("arrays", {}), "arrays must be a list"),
    ],
)
def test_inconsistent_headers_are_refused(good_bytes, mutate, message):
    with pytest.raises(ModelFormatError, match=message):
        decode_packed(_reseal(good_bytes, header_fn=mutate))


def test_nonzero_padding_and_nonfinite_bias_are_refused(good_bytes):
    def set_padding(header, payload):
        entry = next(a for a in header["arrays"] if a["name"] == "weights_1")  # 40 inputs
        payload[entry["offset"] + 7] |= 0x80  # bit 63 of the first row's only word

    with pytest.raises(ModelFormatError, match="non-zero padding bits"):
        decode_packed(_reseal(good_bytes, payload_fn=set_padding))

    def nan_bias(header, payload):
        entry = next(a for a in header["arrays"] if a["name"] == "output_bias")
        payload[entry["offset"] : entry["offset"] + 4] = np.float32(np.nan).tobytes()

    with pytest.raises(ModelFormatError, match="NaN or Inf"):
        decode_packed(_reseal(good_bytes, payload_fn=nan_bias))
    with pytest.raises(ModelFormatError, match="not valid (JSON|UTF-8)|nests deeper than 32"):
        data = bytearray(good_bytes)
        data[56] = 0xFF
        body = bytes(data[56:])
        data[24:56] = hashlib.sha256(body).digest()
        decode_packed(bytes(data))


# ---------------------------------------------------------------------------- declared sizes
def _preamble(h_len: int, p_len: int) -> bytes:
    return struct.pack("<8sHHIQ32s", b"\x89EBPB\r\n\x1a", 1, 0xFEFF, h_len, p_len, bytes(32))


def test_declared_lengths_are_checked_before_reading(tmp_path, monkeypatch):
    import tracemalloc

    from ebprop.packed import fileformat

    # a 64 MiB sparse file whose preamble is consistent with its size, over a lowered limit:
    # refused from the preamble, without reading (allocating) the payload
    monkeypatch.setattr(fileformat, "MAX_PAYLOAD_BYTES", 1 << 20)
    path = tmp_path / "big.ebpb"
    with open(path, "wb") as fh:
        fh.write(_preamble(64, (64 << 20) - 56 - 64))
        fh.truncate(64 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFormatError, match="over the limits"):
            read_packed(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    monkeypatch.undo()
    # a 64-byte file declaring a terabyte: one line, before anything is allocated
    small = tmp_path / "small.ebpb"
    small.write_bytes(_preamble(8, 1 << 40) + b"{}      ")
    with pytest.raises(ModelFormatError, match="over the limits"):
        read_packed(small)
    with pytest.raises(ModelFormatError, match="over the limits"):
        decode_packed(small.read_bytes())


def _set_shape(name, shape, nbytes):
    def mutate(header):
        entry = next(a for a in header["arrays"] if a["name"] == name)
        entry["shape"], entry["nbytes"] = shape, nbytes

    return mutate


@pytest.mark.parametrize(
    "mutate, message",
    [
        # 2^32 · 2^32 overflows int64 to 0 in np.prod: must not pass as a 0-byte array
        (_set_shape("weights_0", [2**32, 2**32], 0), "bad shape"),
        (_set_shape("weights_0", [1, 1, 1], 8), "bad shape"),
        (lambda h: h.update(sizes=[64, 2**40, 10]), "sizes must list"),
        (lambda h: h.update(sizes=[64] + [8] * 70 + [10]), "sizes must list"),
    ],
)
def test_declared_array_sizes_have_sane_limits(good_bytes, mutate, message):
    with pytest.raises(ModelFormatError, match=message):
        decode_packed(_reseal(good_bytes, header_fn=mutate))


@pytest.mark.parametrize("text", [b'{"x": ' + b"1" * 5000 + b"}", b"[" * 100_000])
def test_hostile_json_headers_are_refused_in_one_line(text):
    data = _preamble(len(text), 0)[:24] + hashlib.sha256(text).digest() + text
    with pytest.raises(ModelFormatError, match="not valid (JSON|UTF-8)|nests deeper than 32"):
        decode_packed(data)
