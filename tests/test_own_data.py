"""Your own data: image folders, .npz files, IDX folders; every error path; learning on them."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ebprop.datasets import Preprocessor, is_dataset_path, load_dataset, write_idx
from ebprop.datasets.own import load_path, read_npz
from ebprop.exceptions import DataError, DataNotFoundError

CLASSES = ("circle", "cross", "stripe")


def _pattern(cls: int, rng: np.random.Generator, size: int = 8) -> np.ndarray:
    """A noisy 8x8 pattern of class ``cls`` in [0, 1]: a bright row, column or diagonal."""
    img = rng.uniform(0, 0.25, (size, size))
    k = rng.integers(1, size - 1)
    if cls == 0:
        img[k, :] = 1.0
    elif cls == 1:
        img[:, k] = 1.0
    else:
        img[np.arange(size), np.arange(size)] = 1.0
    return img


def _save(path: Path, unit: np.ndarray, bits: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if bits == 16:
        Image.fromarray(np.rint(unit * 65535).astype(np.uint16)).save(path)
    else:
        Image.fromarray(np.rint(unit * 255).astype(np.uint8)).save(path)


def _folder(root: Path, n_per_class: int = 12, seed: int = 0, sixteen_every: int = 3) -> Path:
    """One subfolder per class of 8x8 PNGs; every ``sixteen_every``-th image is 16-bit."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        for i in range(n_per_class):
            bits = 16 if sixteen_every and i % sixteen_every == 0 else 8
            _save(root / name / f"{i:03d}.png", _pattern(c, rng), bits)
    return root


# ---------------------------------------------------------------------------- folders
def test_flat_folder_splits_names_and_bit_depth(tmp_path):
    root = _folder(tmp_path / "shapes")
    (root / "circle" / "notes.txt").write_text("not an image: ignored")
    (root / "cross" / ".hidden.png").write_bytes(b"ignored too")
    ds = load_dataset(root)
    assert ds.class_names == CLASSES and ds.classes.tolist() == [0, 1, 2]
    assert ds.name == str(root.resolve()) and ds.image_shape == (8, 8)
    # one 16-bit image makes the whole set 16-bit: 8-bit levels scaled by 257 exactly
    assert ds.max_value == 65535 and ds.X_train.dtype == np.uint16
    all_x = np.concatenate([ds.X_train, ds.X_val, ds.X_test])
    assert (all_x % 257 != 0).any()  # 16-bit grey levels survive (8-bit ones are multiples)
    # 36 images: a stratified 0.2 test (7), then a stratified 0.2 of the rest for validation
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (23, 6, 7)
    assert sorted(np.bincount(ds.y_test).tolist()) == [2, 2, 3]
    assert set(ds.checksums) == {"train"}
    # the test split is fixed by test_seed; the validation split follows seed
    other = load_dataset(root, seed=1)
    np.testing.assert_array_equal(ds.X_test, other.X_test)
    assert not np.array_equal(ds.X_val, other.X_val)
    moved = load_dataset(root, test_seed=1, test_fraction=0.5)
    assert len(moved.y_test) == 18


def test_16_bit_png_keeps_grey_levels(tmp_path):
    levels = (np.arange(64).reshape(8, 8) * 1000 + 7).astype(np.uint16)
    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(levels + i).save(tmp_path / "d" / cls / f"{i}.png")
    ds = load_dataset(tmp_path / "d", validation=0)
    stored = np.concatenate([ds.X_train, ds.X_test])
    assert ds.max_value == 65535
    assert {int(x[0, 0]) for x in stored} == {7, 8, 9, 10, 11}
    for x in stored:
        np.testing.assert_array_equal(x - x[0, 0], levels - 7)


def test_eight_bit_folder_is_uint8(tmp_path):
    ds = load_dataset(_folder(tmp_path / "d", sixteen_every=0), validation=0)
    assert ds.max_value == 255 and ds.X_train.dtype == np.uint8


def test_train_test_layout(tmp_path):
    _folder(tmp_path / "d" / "train")
    _folder(tmp_path / "d" / "test", n_per_class=2, seed=1)
    ds = load_dataset(tmp_path / "d", validation=3)
    assert len(ds.y_test) == 6 and len(ds.y_val) == 3 and len(ds.y_train) == 33
    assert set(ds.checksums) == {"train", "test"}
    # a test folder may lack a class, but may not add one
    (tmp_path / "d" / "test" / "stripe" / "000.png").rename(tmp_path / "x.png")
    for p in (tmp_path / "d" / "test" / "stripe").iterdir():
        p.unlink()
    (tmp_path / "d" / "test" / "stripe").rmdir()
    assert load_dataset(tmp_path / "d").y_test.max() == 1
    (tmp_path / "d" / "test" / "zebra").mkdir()
    (tmp_path / "x.png").rename(tmp_path / "d" / "test" / "zebra" / "0.png")
    with pytest.raises(DataError, match=r"test/zebra: test class not in .*train"):
        load_dataset(tmp_path / "d")


def test_split_layout_refuses_other_folders(tmp_path):
    _folder(tmp_path / "d" / "train")
    _folder(tmp_path / "d" / "val", n_per_class=1)
    with pytest.raises(DataError, match=r"also val/; .* only train/"):
        load_dataset(tmp_path / "d")
    for p in (tmp_path / "d" / "val").rglob("*.png"):
        p.rename(tmp_path / "d" / p.name)
    for p in sorted((tmp_path / "d" / "val").iterdir()):
        p.rmdir()
    (tmp_path / "d" / "val").rmdir()
    with pytest.raises(DataError, match=r"/d: images lie directly in the folder"):
        load_dataset(tmp_path / "d")


@pytest.mark.parametrize(
    ("classes", "make", "message"),
    [
        (True, lambda r: (r / "empty").mkdir(), r"/empty: empty class folder"),
        (False, lambda r: r.mkdir(), "no images found"),
        (False, lambda r: _save(r / "loose.png", np.zeros((8, 8)), 8), "images lie directly"),
        (True, lambda r: _save(r / "stray.png", np.zeros((8, 8)), 8), r"directly .*stray\.png"),
        (True, lambda r: (r / "cross" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nx"), "unreadable"),
        (True, lambda r: (r / "cross" / "b.jpg").write_bytes(b"no jpeg"), r"b\.jpg: unreadable"),
        (True, lambda r: _save(r / "cross" / "o.png", np.zeros((9, 8)), 8), r"o\.png: 9x8 pixels"),
    ],
)
def test_folder_errors_name_the_file(tmp_path, classes, make, message):
    root = tmp_path / "d"
    if classes:
        _folder(root, n_per_class=3)
    make(root)
    with pytest.raises(DataError, match=message):
        load_dataset(root)


def test_one_class_only(tmp_path):
    _save(tmp_path / "d" / "only" / "0.png", np.zeros((8, 8)), 8)
    with pytest.raises(DataError, match=r"one class only \('only'\)"):
        load_dataset(tmp_path / "d")


def test_mixed_sizes_resized_to_the_stated_size(tmp_path):
    root = _folder(tmp_path / "d", n_per_class=4)
    big = np.zeros((16, 12))
    big[4:12, :] = 1.0
    _save(root / "cross" / "big.png", big, 16)
    with pytest.raises(DataError, match=r"big\.png: 16x12 pixels, but .*000\.png is 8x8"):
        load_dataset(root)
    ds = load_dataset(root, image_size=(8, 8), resize="resize", validation=0)
    assert ds.image_shape == (8, 8) and len(ds.y_train) + len(ds.y_test) == 13
    small = load_dataset(root, image_size=(4, 6), resize="resize", validation=0)
    assert small.image_shape == (4, 6)
    with pytest.raises(DataError, match="but image_size is 4x6"):
        load_dataset(root, image_size=(4, 6))  # resize="refuse": the size is a check


def test_a_too_small_set_for_a_stratified_split(tmp_path):
    for cls in ("a", "b"):
        _save(tmp_path / "d" / cls / "0.png", np.zeros((8, 8)), 8)
    with pytest.raises(DataError, match="cannot hold out a stratified test split"):
        load_dataset(tmp_path / "d")


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares ``width x height`` and that holds no pixel data at all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@pytest.mark.parametrize(("side", "message"), [(5000, "above the limit"), (60000, "bomb")])
def test_oversize_images_refused_before_decoding(tmp_path, side, message):
    # no pixel data: had the pixels been decoded, the error would be "unreadable image"
    root = _folder(tmp_path / "d", n_per_class=2)
    _png_header_only(root / "cross" / "huge.png", side, side)
    with pytest.raises(DataError, match=rf"huge\.png: .*{message}"):
        load_dataset(root)


def test_max_pixels_and_max_bytes_limits(tmp_path):
    root = _folder(tmp_path / "d", n_per_class=3)
    with pytest.raises(DataError, match=r"8x8 pixels is above the limit of 63"):
        load_dataset(root, max_pixels=63)
    with pytest.raises(DataError, match="9 images of 8x8 exceed the limit of 1000 bytes"):
        load_dataset(root, max_bytes=1000)


# ---------------------------------------------------------------------------- .npz
def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_images_with_string_labels_and_test_set(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (30, 5, 4), dtype=np.uint8)
    y = np.array(["zebra", "ant", "moth"] * 10)
    path = _npz(tmp_path / "d.npz", X_train=X, y_train=y, X_test=X[:6], y_test=y[:6])
    ds = load_dataset(path, validation=0)
    assert ds.class_names == ("ant", "moth", "zebra") and ds.max_value == 255
    np.testing.assert_array_equal(np.asarray(ds.class_names)[ds.y_train], y)
    np.testing.assert_array_equal(ds.X_test, X[:6])
    assert ds.checksums and ds.image_shape == (5, 4)


def test_npz_features_with_int_labels(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 7))
    y = np.repeat([3, 11], 25)
    ds = load_dataset(_npz(tmp_path / "f.npz", X_train=X, y_train=y))
    assert not ds.is_images and ds.max_value is None and ds.image_shape == (7,)
    assert ds.class_names == ("3", "11")  # numeric order, not text order
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (32, 8, 10)
    assert "features" in repr(ds)


def test_npz_float_images_need_max_value(tmp_path):
    X = np.random.default_rng(0).uniform(size=(20, 3, 3))
    y = np.arange(20) % 2
    with pytest.raises(DataError, match="add max_value"):
        load_dataset(_npz(tmp_path / "a.npz", X_train=X, y_train=y))
    ds = load_dataset(_npz(tmp_path / "b.npz", X_train=X, y_train=y, max_value=1.0))
    assert ds.max_value == 1.0
    with pytest.raises(DataError, match=r"pixel values span .* outside \[0, 0.5\]"):
        load_dataset(_npz(tmp_path / "c.npz", X_train=X, y_train=y, max_value=0.5))
    with pytest.raises(DataError, match="max_value is for images"):
        load_dataset(_npz(tmp_path / "e.npz", X_train=X[:, 0], y_train=y, max_value=1.0))
    with pytest.raises(DataError, match="one positive number"):
        load_dataset(_npz(tmp_path / "f.npz", X_train=X, y_train=y, max_value=[1.0, 2.0]))
    ds = load_dataset(_npz(tmp_path / "g.npz", X_train=X > 0.5, y_train=y))
    assert ds.max_value == 1 and ds.X_train.dtype == np.uint8


GOOD_X = np.zeros((10, 3))
GOOD_Y = np.arange(10) % 2


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"X_train": GOOD_X, "y_train": GOOD_Y[:9]}, "X_train has 10 samples but y_train has 9"),
        (
            {"X_train": GOOD_X, "y_train": GOOD_Y, "X_test": GOOD_X, "y_test": GOOD_Y[:3]},
            "X_test has 10 samples but y_test has 3",
        ),
        ({"X_train": np.where(GOOD_X == 0, np.nan, 0), "y_train": GOOD_Y}, "NaN or infinite"),
        ({"X_train": np.full((10, 3), np.inf), "y_train": GOOD_Y}, "NaN or infinite"),
        ({"X_train": np.zeros(10), "y_train": GOOD_Y}, r"shape \(10,\); expected images"),
        ({"X_train": np.zeros((10, 2, 2, 3)), "y_train": GOOD_Y}, "pass color=.rgb."),
        ({"X_train": GOOD_X, "y_train": GOOD_Y.reshape(5, 2)}, "labels must be 1-D"),
        ({"X_train": GOOD_X, "y_train": GOOD_Y + 0.5}, "non-integer or NaN float labels"),
        ({"X_train": GOOD_X, "y_train": np.zeros(10)}, r"one class only \('0'\)"),
        ({"X_train": GOOD_X}, "missing y_train"),
        ({"X_train": GOOD_X, "y_train": GOOD_Y, "X_test": GOOD_X}, "has X_test but no y_test"),
        ({"X_train": GOOD_X, "y_train": GOOD_Y, "X_val": GOOD_X}, "unknown member.*X_val"),
        (
            {"X_train": GOOD_X, "y_train": GOOD_Y, "X_test": GOOD_X, "y_test": GOOD_Y + 5},
            r"y_test holds labels that are not in y_train: \['5', '6'\]",
        ),
        (
            {"X_train": GOOD_X, "y_train": GOOD_Y, "X_test": np.zeros((10, 4)), "y_test": GOOD_Y},
            "X_test samples have shape",
        ),
        ({"X_train": GOOD_X.astype(str), "y_train": GOOD_Y}, "samples must be numbers"),
        ({"X_train": GOOD_X[:0], "y_train": GOOD_Y[:0]}, "X_train is empty"),
    ],
)
def test_npz_errors_name_the_file(tmp_path, arrays, message):
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message) as info:
        load_dataset(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_npz_object_arrays_are_refused_without_unpickling(tmp_path, monkeypatch):
    path = tmp_path / "obj.npz"
    np.savez(path, X_train=GOOD_X, y_train=np.array(["a", "b"] * 5, dtype=object))

    def no_pickle(*args, **kwargs):
        raise AssertionError("unpickled a user file")

    monkeypatch.setattr("pickle.load", no_pickle)
    monkeypatch.setattr("pickle.loads", no_pickle)
    with pytest.raises(DataError, match=r"y_train is an object array.*dtype=str"):
        load_dataset(path)


def _npy_member(shape, dtype="<f8", payload=b"") -> bytes:
    out = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(out, header)
    return out.getvalue() + payload


def test_npz_declared_sizes_are_checked_before_allocating(tmp_path):
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("X_train.npy", _npy_member((10**6, 10**6), payload=b"\0" * 64))
        zf.writestr("y_train.npy", _npy_member((10**6,), "<i8"))
    with pytest.raises(DataError, match=r"X_train declares shape \(1000000, 1000000\).*limit"):
        load_dataset(path)
    with zipfile.ZipFile(path, "w") as zf:  # in the limit, but longer than what is stored
        zf.writestr("X_train.npy", _npy_member((1000, 10), payload=b"\0" * 64))
    with pytest.raises(DataError, match="X_train is truncated"):
        read_npz(path)


def test_npz_compressed_bomb_refused_by_its_header(tmp_path):
    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, X_train=np.zeros((1000, 1000)), y_train=np.arange(1000) % 2)
    assert path.stat().st_size < 100_000  # 8 MB of zeros in a small file
    with pytest.raises(DataError, match=r"8000000 bytes, above the limit of 1000000"):
        load_dataset(path, max_bytes=1_000_000)
    arrays = read_npz(path)  # the default limit reads it, streamed into one allocation
    assert arrays["X_train"].shape == (1000, 1000) and arrays["X_train"].flags.writeable


def test_npz_fortran_order_and_big_endian(tmp_path):
    X = np.asfortranarray(np.arange(24, dtype=">f4").reshape(6, 4))
    path = _npz(tmp_path / "f.npz", X_train=X, y_train=np.arange(6) % 2)
    got = read_npz(path)["X_train"]
    np.testing.assert_array_equal(got, X)
    assert got.dtype == np.dtype("float32")


def test_not_an_npz(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"plain text")
    with pytest.raises(DataError, match=r"x\.npz: not a valid \.npz"):
        load_dataset(tmp_path / "x.npz")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(DataError, match=r"x\.csv: not a dataset"):
        load_dataset(tmp_path / "x.csv")


# ---------------------------------------------------------------------------- IDX folders
def test_own_idx_files_load_without_checksums(tmp_path):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 4, 4), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", (np.arange(20) % 4).astype(np.uint8) + 10)
    ds = load_dataset(tmp_path, validation=0)
    assert ds.class_names == ("10", "11", "12", "13") and ds.max_value == 255
    assert len(ds.y_test) == 4 and set(ds.checksums) == {
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
    }
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (3, 4, 4), np.uint8))
    with pytest.raises(DataError, match="has t10k-images-idx3-ubyte but no t10k-labels"):
        load_dataset(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([10, 11, 12], np.uint8))
    assert len(load_dataset(tmp_path).y_test) == 3


# ---------------------------------------------------------------------------- dispatch
def test_names_and_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnist").mkdir()
    assert not is_dataset_path("mnist") and not is_dataset_path("Fashion_MNIST")
    assert is_dataset_path("./mnist") and is_dataset_path(tmp_path) and is_dataset_path("x.npz")
    with pytest.raises(DataNotFoundError, match="nope.npz: no such file or folder"):
        load_dataset("nope.npz")
    with pytest.raises(DataNotFoundError, match="no such file"):
        load_path(tmp_path / "nothing")
    with pytest.raises(ValueError, match="or give the path"):
        load_dataset("cifar")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resize": "resize"}, "needs image_size"),
        ({"resize": "crop"}, "resize must be one of"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"image_size": (8,)}, "image_size must be"),
        ({"validation": 1.5}, "validation"),
    ],
)
def test_bad_options(tmp_path, kwargs, message):
    root = _folder(tmp_path / "d", n_per_class=4)
    (root / "circle" / "broken.png").write_bytes(b"x")  # options are checked before any file
    with pytest.raises(ValueError, match=message):
        load_dataset(root, **kwargs)


# ---------------------------------------------------------------------------- learning
def test_learns_a_generated_folder_dataset(tmp_path):
    from ebprop.estimator import EBPClassifier

    ds = load_dataset(_folder(tmp_path / "shapes", n_per_class=40), validation=0)
    pre = Preprocessor(scaling="unit").fit(ds.X_train, ds.max_value)
    clf = EBPClassifier(hidden_layer_sizes=(20,), max_iter=8, random_state=0)
    clf.fit(pre.transform(ds.X_train), ds.y_train)
    error = np.mean(clf.predict(pre.transform(ds.X_test)) != ds.y_test)
    assert error <= 0.1, error  # chance is 2/3


def test_learns_npz_features(tmp_path):
    from ebprop.estimator import EBPClassifier

    rng = np.random.default_rng(0)
    y = np.repeat(["low", "high"], 100)
    X = rng.normal(size=(200, 6)) * 50 + 1000  # far from [0, 1]: the fitted range matters
    X[y == "high", :2] += 150
    ds = load_dataset(_npz(tmp_path / "f.npz", X_train=X, y_train=y), validation=0)
    pre = Preprocessor(scaling="symmetric").fit(ds.X_train, ds.max_value)
    clf = EBPClassifier(hidden_layer_sizes=(10,), max_iter=5, random_state=0)
    clf.fit(pre.transform(ds.X_train), ds.y_train)
    error = np.mean(clf.predict(pre.transform(ds.X_test)) != ds.y_test)
    assert error <= 0.1, error


def test_align_labels_to_a_models_classes(tmp_path):
    from ebprop.datasets.base import align_labels

    model = ("circle", "cross", "stripe")
    y = np.array([0, 1, 1, 0])  # a folder holding only cross and stripe
    np.testing.assert_array_equal(align_labels(y, ("cross", "stripe"), model, "d"), [1, 2, 2, 1])
    with pytest.raises(DataError, match=r"d: classes \['zebra'\] are not among"):
        align_labels(np.array([0, 1]), ("cross", "zebra"), model, "d")
    # a class present in the names but absent from y does not matter
    np.testing.assert_array_equal(align_labels(np.array([0]), ("cross", "zebra"), model, "d"), [1])


def test_nested_files_count_hidden_ones_do_not(tmp_path):
    root = _folder(tmp_path / "d", n_per_class=4, sixteen_every=0)
    _save(root / "circle" / "more" / "extra.png", np.zeros((8, 8)), 8)
    (root / "cross" / ".cache").mkdir()
    (root / "cross" / ".cache" / "junk.png").write_bytes(b"not read")
    (root / ".trash").mkdir()  # a hidden folder is no class
    ds = load_dataset(root, validation=0)
    assert len(ds.y_train) + len(ds.y_test) == 13 and ds.class_names == CLASSES


def test_dataset_split_by_name(tmp_path):
    ds = load_dataset(_folder(tmp_path / "d", n_per_class=5), validation=3)
    X, y = ds.split("all")
    assert len(X) == len(y) == 15 and X.shape[1:] == (8, 8)
    np.testing.assert_array_equal(ds.split("val")[1], ds.y_val)
    np.testing.assert_array_equal(X[-len(ds.y_test) :], ds.X_test)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        ds.split("dev")
