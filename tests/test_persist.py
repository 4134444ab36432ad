"""Model files: round trip, atomic writes, and refusal of every kind of bad file."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from ebprop import EBPClassifier
from ebprop.datasets import Preprocessor
from ebprop.exceptions import ModelFormatError
from ebprop.persist import (
    FORMAT_VERSION,
    atomic_savez,
    atomic_write_bytes,
    decode_header,
    encode_header,
    load_model,
    save_model,
)


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 17, size=(120, 4, 4)).astype(np.uint8)
    y = (images.reshape(120, -1).sum(1) > images.reshape(120, -1).sum(1).mean()).astype(int) * 2
    pre = Preprocessor(scaling="standard", filters="sobel").fit(images, 16)
    X = pre.transform(images)
    est = EBPClassifier(hidden_layer_sizes=(7,), max_iter=2, random_state=0).fit(X, y)
    return est, pre, images, X, y


def test_round_trip_predicts_identically_and_keeps_training(tmp_path, trained):
    est, pre, images, X, y = trained
    path = tmp_path / "m.npz"
    meta = {"training_options": {"seed": 3}, "checksums": {"f": "abc"}, "metrics": {"e": 0.1}}
    save_model(path, est, pre, meta | {"note": "hi"})
    loaded = load_model(path)
    assert loaded.metadata["format_version"] == FORMAT_VERSION
    assert loaded.metadata["training_options"] == {"seed": 3}
    assert loaded.metadata["extra"] == {"note": "hi"}
    assert loaded.metadata["architecture"] == {"sizes": [48, 7, 1], "weights": "binary",
                                               "dtype": "float32"}  # fmt: skip
    X2 = loaded.preprocessor.transform(images)
    np.testing.assert_array_equal(X2, X)
    for readout in ("probabilistic", "deterministic"):
        np.testing.assert_array_equal(
            loaded.estimator.predict(X2, readout=readout), est.predict(X, readout=readout)
        )
    np.testing.assert_array_equal(loaded.estimator.predict_proba(X2), est.predict_proba(X))
    loaded.estimator.partial_fit(X2, y)  # continues training
    assert loaded.estimator.n_iter_ == est.n_iter_ + 1
    assert not np.array_equal(loaded.estimator.coefs_[0], est.coefs_[0])


def test_model_without_preprocessor_and_string_classes(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 3))
    y = np.array(["cat", "dog", "emu", "fox"])[rng.integers(0, 4, 40)]
    est = EBPClassifier(hidden_layer_sizes=(), weights="real", max_iter=1, random_state=1).fit(X, y)
    save_model(tmp_path / "m.npz", est, None, {})
    loaded = load_model(tmp_path / "m.npz")
    assert loaded.preprocessor is None
    assert loaded.estimator.classes_.tolist() == ["cat", "dog", "emu", "fox"]
    np.testing.assert_array_equal(loaded.estimator.predict(X), est.predict(X))


def test_save_refuses_unfitted(tmp_path):
    with pytest.raises(ValueError, match="fitted"):
        save_model(tmp_path / "m.npz", EBPClassifier(), None, {})


def test_atomic_write_keeps_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temp file left behind


def test_atomic_savez_round_trips_and_refuses_objects(tmp_path):
    atomic_savez(tmp_path / "a.npz", x=np.arange(3))
    with np.load(tmp_path / "a.npz", allow_pickle=False) as f:
        assert f["x"].tolist() == [0, 1, 2]
    with pytest.raises(TypeError, match="object"):
        atomic_savez(tmp_path / "b.npz", x=np.array([{}], dtype=object))


def test_header_codec():
    h = {"a": [1, 2], "b": "é"}
    assert decode_header(encode_header(h)) == h
    with pytest.raises(ValueError):
        encode_header({"x": float("nan")})
    with pytest.raises(ModelFormatError, match="valid JSON"):
        decode_header(np.frombuffer(b"{", np.uint8))
    with pytest.raises(ModelFormatError, match="JSON object"):
        decode_header(np.frombuffer(b"[1]", np.uint8))
    with pytest.raises(ModelFormatError, match="uint8"):
        decode_header(np.zeros(3, np.float32))


# ---------------------------------------------------------------- tampered files
def _tamper(tmp_path, trained, edit):
    est, pre, *_ = trained
    good = tmp_path / "good.npz"
    save_model(good, est, pre, {})
    with np.load(good, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(arrays["header"].tobytes())
    edit(header, arrays)
    arrays["header"] = encode_header(header)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    return bad


def _newer(h, a):
    h["format_version"] = FORMAT_VERSION + 1


def _missing(h, a):
    del a["coef_1"]


def _extra(h, a):
    a["surprise"] = np.zeros(2)


def _shape(h, a):
    a["coef_0"] = a["coef_0"][:, :3]


def _nonfinite(h, a):
    a["intercept_0"] = a["intercept_0"].copy()
    a["intercept_0"][0] = np.nan


def _not_model(h, a):
    h["format"] = "something"


def _bad_params(h, a):
    h["estimator_params"]["nonsense"] = 1


def _arch(h, a):
    h["architecture"]["sizes"] = [48, 6, 1]
    h["arrays"]["coef_0"]["shape"] = [48, 6]
    a["coef_0"] = a["coef_0"][:, :6]


def _no_key(h, a):
    del h["classes"]


def _bad_pre(h, a):
    h["preprocessor"]["scaling"] = "weird"


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_newer, f"format version {FORMAT_VERSION + 1}.*upgrade ebprop"),
        (_missing, r"missing \['coef_1'\]"),
        (_extra, r"extra \['surprise'\]"),
        (_shape, "'coef_0' has shape"),
        (_nonfinite, "NaN"),
        (_not_model, "not an ebprop model"),
        (_bad_params, "inconsistent estimator state"),
        (_arch, r"layer 0 arrays have shapes \(48, 6\) and \(7,\)"),
        (_no_key, "lacks 'classes'"),
        (_bad_pre, "bad preprocessor state"),
    ],
)
def test_load_refuses_tampered_files(tmp_path, trained, edit, match):
    bad = _tamper(tmp_path, trained, edit)
    with pytest.raises(ModelFormatError, match=match) as info:
        load_model(bad)
    assert str(bad) in str(info.value)


def test_load_refuses_truncated_garbage_pickled_and_missing(tmp_path, trained):
    est, pre, *_ = trained
    good = tmp_path / "good.npz"
    save_model(good, est, pre, {})
    data = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError, match="trunc.npz"):
        load_model(tmp_path / "trunc.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a model at all")
    with pytest.raises(ModelFormatError, match="no zip header"):
        load_model(tmp_path / "junk.npz")
    np.savez(tmp_path / "pickled.npz", header=encode_header({}), x=np.array([{}], dtype=object))
    with pytest.raises(ModelFormatError, match="pickled.npz"):
        load_model(tmp_path / "pickled.npz")
    np.savez(tmp_path / "nohdr.npz", x=np.zeros(2))
    with pytest.raises(ModelFormatError, match="no 'header'"):
        load_model(tmp_path / "nohdr.npz")
    with pytest.raises(FileNotFoundError, match="no such model file"):
        load_model(tmp_path / "absent.npz")
    with pytest.raises(ModelFormatError, match="is a folder"):
        load_model(tmp_path)
