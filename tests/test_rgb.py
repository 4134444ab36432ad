"""RGB inputs (``color="rgb"``): files, .npz, preprocessing, appearance, training, export, predict.

The learning tests use a synthetic colour dataset whose class is carried by the colour alone:
a "red" image has its pattern in the red channel, a "blue" image the same pattern in the blue
channel, at levels of equal luma. Read as grey, each red image is bit for bit its blue twin, so
no classifier can tell them apart; read as RGB, the channels carry the class.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from packed_c_helper import c_predict, requires_cc
from PIL import Image

from ebprop import EBPClassifier
from ebprop.cli import main
from ebprop.datasets import Preprocessor, load_dataset, read_image
from ebprop.datasets.appearance import (
    check_appearance,
    describe_images,
    image_border_mean,
    image_polarity,
)
from ebprop.datasets.images import prepare_image, resize_image
from ebprop.exceptions import DataError
from ebprop.inputs import npy_to_raw, read_inputs
from ebprop.packed import PackedNetwork, pack_estimator
from ebprop.persist import load_model
from ebprop.runs import TrainOptions
from ebprop.runs.folder import ADDED_DEFAULTS

SIDE = 8


def _equal_luma_levels() -> list[tuple[int, int]]:
    """(red, blue) levels that Pillow's convert("L") maps to the same grey level (> 0)."""
    red = np.zeros((1, 256, 3), np.uint8)
    red[0, :, 0] = np.arange(256)
    blue = np.zeros((1, 256, 3), np.uint8)
    blue[0, :, 2] = np.arange(256)
    lr = np.asarray(Image.fromarray(red).convert("L"))[0].astype(int)
    lb = np.asarray(Image.fromarray(blue).convert("L"))[0].astype(int)
    pairs = {}
    for b in range(1, 256):
        hits = np.flatnonzero(lr == lb[b])
        if lb[b] > 0 and len(hits):
            pairs.setdefault(int(lb[b]), (int(hits[0]), b))
    return list(pairs.values())


def _colour_pairs(n_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n_pairs`` red images and their blue twins (same pattern, same luma), (n, 8, 8, 3)."""
    levels = np.array(_equal_luma_levels())
    rng = np.random.default_rng(seed)
    mask = rng.random((n_pairs, SIDE, SIDE)) < 0.5
    k = rng.integers(len(levels), size=(n_pairs, SIDE, SIDE))
    red = np.zeros((n_pairs, SIDE, SIDE, 3), np.uint8)
    blue = np.zeros_like(red)
    red[..., 0] = np.where(mask, levels[k, 0], 0)
    blue[..., 2] = np.where(mask, levels[k, 1], 0)
    return red, blue


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("colours")
    red, blue = _colour_pairs(100)
    for name, images in (("red", red), ("blue", blue)):
        (root / name).mkdir()
        for i, image in enumerate(images):
            Image.fromarray(image).save(root / name / f"{i:03d}.png")
    return root


# ---------------------------------------------------------------------------- files
def test_read_image_rgb_keeps_the_channels_in_hwc_order(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "c.png")
    got, depth = read_image(tmp_path / "c.png", color="rgb")
    np.testing.assert_array_equal(got, image)
    assert depth == 255
    grey, _ = read_image(tmp_path / "c.png")  # the default is unchanged: luma
    np.testing.assert_array_equal(grey, np.asarray(Image.fromarray(image).convert("L")))
    # a grey file in a colour dataset repeats its level in each channel
    Image.fromarray(image[..., 1]).save(tmp_path / "g.png")
    got, _ = read_image(tmp_path / "g.png", color="rgb")
    np.testing.assert_array_equal(got, np.repeat(image[..., 1:2], 3, axis=2))
    # 16-bit grey keeps its depth in all three
    deep = rng.integers(0, 65536, size=(4, 3)).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    got, depth = read_image(tmp_path / "d.png", color="rgb")
    assert depth == 65535 and got.dtype == np.uint16
    np.testing.assert_array_equal(got, np.repeat(deep[..., None], 3, axis=2))
    with pytest.raises(ValueError, match="color must be one of grey, rgb, got 'cmyk'"):
        read_image(tmp_path / "c.png", color="cmyk")


def test_transparent_rgb_is_composited_on_the_background(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (200, 10, 30, 255)  # opaque; the rest fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    got, _ = read_image(tmp_path / "t.png", color="rgb", background=(1, 2, 3))
    assert got[0, 0].tolist() == [200, 10, 30]
    assert got[1, 1].tolist() == [1, 2, 3]


def test_resize_and_prepare_rgb_work_channel_by_channel(tmp_path):
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, size=(9, 6, 3), dtype=np.uint8)
    out = resize_image(image, (4, 5), 255)
    assert out.shape == (4, 5, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], resize_image(image[..., c], (4, 5), 255))
    Image.fromarray(image).save(tmp_path / "p.png")
    np.testing.assert_array_equal(prepare_image(tmp_path / "p.png", (4, 5, 3), 255), out)


# ---------------------------------------------------------------------------- datasets
def test_folder_read_in_colour_keeps_what_grey_loses(folder):
    grey = load_dataset(folder, validation=0)
    rgb = load_dataset(folder, validation=0, color="rgb")
    assert grey.X_train.shape[1:] == (SIDE, SIDE) and rgb.X_train.shape[1:] == (SIDE, SIDE, 3)
    assert rgb.is_images and rgb.image_shape == (SIDE, SIDE, 3)
    np.testing.assert_array_equal(rgb.y_train, grey.y_train)  # same files, same split
    # as grey, every red image is its blue twin: the classes cannot be told apart
    red, blue = _colour_pairs(100)
    as_grey = [np.asarray(Image.fromarray(x).convert("L")) for x in (red, blue) for x in x]
    np.testing.assert_array_equal(as_grey[:100], as_grey[100:])
    # as RGB, the red channel is the class
    is_red = rgb.X_train[..., 0].reshape(len(rgb.X_train), -1).any(axis=1)
    np.testing.assert_array_equal(is_red, np.array(rgb.class_names)[rgb.y_train] == "red")


def test_npz_rgb_images(tmp_path):
    red, blue = _colour_pairs(10)
    X, y = np.concatenate([red, blue]), np.repeat(["red", "blue"], 10)
    np.savez(tmp_path / "c.npz", X_train=X, y_train=y)
    ds = load_dataset(tmp_path / "c.npz", validation=0, color="rgb")
    assert ds.X_train.shape[1:] == (SIDE, SIDE, 3) and ds.max_value == 255
    with pytest.raises(DataError, match=r"for RGB images pass color='rgb' \(--color rgb\)"):
        load_dataset(tmp_path / "c.npz")
    np.savez(tmp_path / "g.npz", X_train=X[..., 0], y_train=y)
    with pytest.raises(DataError, match=r"color rgb needs RGB images \(n, h, w, 3\)"):
        load_dataset(tmp_path / "g.npz", color="rgb")
    with pytest.raises(ValueError, match="color must be one of grey, rgb, got 'RGB'"):
        load_dataset(tmp_path / "c.npz", color="RGB")


def test_bundled_datasets_are_grey_and_refuse_rgb():
    with pytest.raises(ValueError, match=r"digits is a grey dataset; leave color at grey"):
        load_dataset("digits", color="rgb")
    with pytest.raises(ValueError, match=r"mnist is a grey dataset"):
        TrainOptions(dataset="mnist", color="rgb")
    with pytest.raises(ValueError, match="color must be one of grey, rgb, got 'red'"):
        TrainOptions(color="red")
    assert ADDED_DEFAULTS["color"] == "grey"  # runs stored before the option read grey


# ---------------------------------------------------------------------------- preprocessing
def test_preprocessor_flattens_rgb_in_nhwc_order():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(6, 4, 5, 3), dtype=np.uint8)
    pre = Preprocessor(scaling="symmetric").fit(images, 255)
    X = pre.transform(images, np.float64)
    expected = np.array([[2 * int(v) / 255 - 1 for v in img.flat] for img in images])  # y, x, c
    np.testing.assert_allclose(X, expected)
    assert pre.image_shape_ == (4, 5, 3) and pre.n_features_ == 60
    again = Preprocessor.from_state(*pre.get_state())
    np.testing.assert_array_equal(again.transform(images, np.float64), X)
    with pytest.raises(DataError, match=r"it takes RGB images \(h, w, 3\): read them in colour"):
        pre.transform(images[..., 0])
    grey = Preprocessor().fit(images[..., 0], 255)
    with pytest.raises(DataError, match=r"it takes grey images \(h, w\): convert them to grey"):
        grey.transform(images)
    for kwargs in ({"filters": "sobel"}, {"deskew": True}):
        with pytest.raises(DataError, match="filters and deskew work on grey images"):
            Preprocessor(**kwargs).fit(images, 255)


# ---------------------------------------------------------------------------- appearance
def test_rgb_appearance_uses_all_channels_of_the_border():
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(5, 6, 7, 3)).astype(np.uint8)
    border = np.ones((6, 7), bool)
    border[1:-1, 1:-1] = False
    expected = [img[border].astype(float).mean() for img in images]  # all pixels, all channels
    np.testing.assert_allclose(image_border_mean(images), expected)
    page = np.full((6, 7, 3), 250, np.uint8)
    page[2:4, 2:5] = (200, 0, 0)  # red ink on a light page
    assert image_polarity(page, 255) == "dark_on_light"
    assert image_polarity(255 - page, 255) == "light_on_dark"
    info = describe_images(np.stack([page] * 3), 255)
    assert info["colour"] == "rgb" and info["image_shape"] == [6, 7, 3]
    assert info["polarity"] == "dark_on_light"
    assert check_appearance(info) is info
    with pytest.raises(ValueError, match=r"'input.image_shape' must be \[h, w, 3\] for rgb"):
        check_appearance(info | {"image_shape": [6, 7]})
    with pytest.raises(ValueError, match=r"'input.image_shape' must be \[h, w\] for grey"):
        check_appearance(info | {"colour": "grey"})
    with pytest.raises(ValueError, match="'input.colour' must be 'grey' or 'rgb'"):
        check_appearance(info | {"colour": "cmyk"})


# ---------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def colour_nets(folder):
    """A small binary CNN trained on the colour folder read as grey and as RGB."""
    out = {}
    for color in ("grey", "rgb"):
        ds = load_dataset(folder, validation=0, color=color)
        pre = Preprocessor().fit(ds.X_train, ds.max_value)
        shape = pre.image_shape_ + (1,) * (3 - len(pre.image_shape_))
        est = EBPClassifier(
            architecture="4C3-8", input_shape=shape, init_variance=30, max_iter=5, random_state=0
        ).fit(pre.transform(ds.X_train), ds.y_train)
        out[color] = (ds, pre, est)
    return out


def _error(ds, pre, est, readout="probabilistic") -> float:
    return float(np.mean(est.predict(pre.transform(ds.X_test), readout) != ds.y_test))


def test_conv_net_learns_from_colour_only_in_rgb(colour_nets):
    grey_error = _error(*colour_nets["grey"])
    rgb_error = _error(*colour_nets["rgb"])
    assert grey_error >= 0.25  # the grey twins carry no class: chance is 0.5
    assert rgb_error <= 0.1  # 0.0 measured
    assert colour_nets["rgb"][2].n_features_in_ == SIDE * SIDE * 3


def test_mlp_on_rgb_sees_every_channel(folder):
    ds = load_dataset(folder, validation=0, color="rgb")
    pre = Preprocessor().fit(ds.X_train, ds.max_value)
    est = EBPClassifier(hidden_layer_sizes=(20,), max_iter=5, random_state=0)
    est.fit(pre.transform(ds.X_train), ds.y_train)
    assert est.n_features_in_ == SIDE * SIDE * 3
    assert _error(ds, pre, est) <= 0.1


def test_cli_trains_rgb_and_records_the_input_shape(folder, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--dataset", str(folder), "--color", "rgb", "--arch", "4C3-8"]
    res = CliRunner().invoke(
        main, [*args, "--epochs", "2", "--init-variance", "30", "--out", str(out), "-q"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads((out / "options.json").read_text())["color"] == "rgb"
    model = load_model(out / "model.npz")
    assert model.metadata["architecture"]["input_shape"] == [SIDE, SIDE, 3]
    assert model.metadata["input"]["colour"] == "rgb"
    res = CliRunner().invoke(main, ["info", str(out / "model.npz")])
    assert "layers: 8x8x3 → 4C3 6x6x4" in res.output and "8x8x3 images" in res.output
    # predict: image files are read in colour; a grey array is refused, naming the fix
    names, raw = read_inputs([folder / "red" / "000.png"], (SIDE, SIDE, 3), 255, "no", None)
    assert raw.shape == (1, SIDE, SIDE, 3)
    np.save(tmp_path / "grey.npy", np.zeros((2, SIDE, SIDE), np.uint8))
    res = CliRunner().invoke(main, ["predict", str(out / "model.npz"), str(tmp_path / "grey.npy")])
    assert res.exit_code != 0
    assert "the model takes RGB images (channels last): give all three channels" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_npy_inputs_for_rgb_and_grey_models(tmp_path):
    rgb = np.arange(2 * 4 * 3 * 3, dtype=np.uint8).reshape(2, 4, 3, 3)
    for name, arr in (("a", rgb), ("b", rgb.reshape(2, -1)), ("c", rgb[0])):
        np.save(tmp_path / f"{name}.npy", arr)
        got = npy_to_raw(tmp_path / f"{name}.npy", (4, 3, 3))
        np.testing.assert_array_equal(got, rgb if name != "c" else rgb[:1])
    with pytest.raises(ValueError, match="the model takes grey images: convert the colour"):
        npy_to_raw(tmp_path / "a.npy", (4, 3))


# ---------------------------------------------------------------------------- deployment
def test_packed_rgb_cnn_equals_ebp_d(colour_nets):
    ds, pre, est = colour_nets["rgb"]
    model = pack_estimator(est, pre)
    assert model.preprocessing["image_shape"] == [SIDE, SIDE, 3]
    X = np.concatenate([ds.X_train, ds.X_test])
    reference = est.predict(pre.transform(X), readout="deterministic")
    np.testing.assert_array_equal(PackedNetwork(model).predict(X), reference)
    # the pixels row-major (y, x, channel), as the dataset stores them
    np.testing.assert_array_equal(PackedNetwork(model).predict(X.reshape(len(X), -1)), reference)


@requires_cc
def test_c_rgb_cnn_equals_ebp_d(colour_nets, tmp_path):
    ds, pre, est = colour_nets["rgb"]
    model = pack_estimator(est, pre)
    X = np.concatenate([ds.X_train, ds.X_test])
    reference = est.predict(pre.transform(X), readout="deterministic")
    got = c_predict(model, X.reshape(len(X), -1), tmp_path / "c")
    np.testing.assert_array_equal(model.classes[got], reference)
    header = (tmp_path / "c" / "model.h").read_text()
    assert "#define EBPROP_IMAGE_CHANNELS 3" in header
