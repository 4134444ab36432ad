"""Preprocessor: scalings, filters, pooling, deskewing, state round trip, input validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from ebprop.datasets import DEFAULT_FILTERS, FILTER_BANKS, Preprocessor, deskew, parse_filters
from ebprop.datasets.filters import avg_pool, filter_width
from ebprop.exceptions import DataError

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (40, 12, 12), dtype=np.uint8)


def _edge(n=1, h=6, w=6, col=3):
    """Vertical step edge: columns >= col are 255."""
    img = np.zeros((n, h, w), np.uint8)
    img[:, :, col:] = 255
    return img


@pytest.mark.parametrize(
    ("scaling", "lo", "hi"),
    [("unit", 0, 1), ("symmetric", -1, 1), ("binary", -1, 1)],
)
def test_scaling_ranges(scaling, lo, hi):
    X = Preprocessor(scaling=scaling).fit_transform(IMAGES, 255)
    assert X.shape == (40, 144) and X.dtype == np.float32
    assert X.min() >= lo and X.max() <= hi
    assert X.min() == lo and X.max() == hi  # random images reach both ends
    if scaling == "binary":
        assert set(np.unique(X)) == {-1.0, 1.0}
        np.testing.assert_array_equal(X == 1, IMAGES.reshape(40, -1) >= 127.5)
    if scaling == "unit":
        np.testing.assert_allclose(X, IMAGES.reshape(40, -1) / 255, rtol=1e-6)


def test_digits_max_value():
    imgs = np.array([[[0, 8], [16, 4]]], np.uint8)
    X = Preprocessor(scaling="symmetric").fit_transform(imgs, 16)
    np.testing.assert_allclose(X, [[-1, 0, 1, -0.5]])


def test_standard_fitted_on_train_only():
    train, test = IMAGES[:30], IMAGES[30:]
    pre = Preprocessor(scaling="standard").fit(train, 255)
    Xtr, Xte = pre.transform(train, np.float64), pre.transform(test, np.float64)
    np.testing.assert_allclose(Xtr.mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(Xtr.std(0), 1, atol=1e-9)
    u = train.reshape(30, -1) / 255
    np.testing.assert_allclose(Xte, (test.reshape(10, -1) / 255 - u.mean(0)) / u.std(0))


def test_standard_zero_variance_guard():
    imgs = IMAGES.copy()
    imgs[:, 0, 0] = 7  # constant feature
    X = Preprocessor(scaling="standard").fit_transform(imgs, 255, np.float64)
    assert np.isfinite(X).all()
    np.testing.assert_allclose(X[:, 0], 0, atol=1e-12)


def test_sobel_of_vertical_edge_by_hand():
    pre = Preprocessor(filters="sobel", keep_pixels=False).fit(_edge(), 255)
    X = pre.transform(_edge(), np.float64)
    sx, sy = X[0, :36].reshape(6, 6), X[0, 36:].reshape(6, 6)
    # correlation with [-1 0 1; -2 0 2; -1 0 1] / 4 on a 0 -> 1 step between columns 2 and 3
    np.testing.assert_allclose(sx[2:4, :], [[0, 0, 1, 1, 0, -1]] * 2)  # -1: zero padding at right
    np.testing.assert_allclose(sx[0, 2:4], [0.75, 0.75])  # top row: one neighbour row padded
    np.testing.assert_allclose(sy[1:5, :3], 0)
    np.testing.assert_allclose(sy[1:5, 3:5], 0)  # inside the bright half, no vertical change


def test_laplace_and_gauss_by_hand():
    dot = np.zeros((1, 5, 5), np.uint8)
    dot[0, 2, 2] = 255
    lap = Preprocessor(filters="laplace", keep_pixels=False).fit_transform(dot, 255, np.float64)
    expected = np.zeros((5, 5))
    expected[2, 2] = -1
    expected[[1, 3, 2, 2], [2, 2, 1, 3]] = 0.25
    np.testing.assert_allclose(lap.reshape(5, 5), expected)
    g = Preprocessor(filters="gauss", keep_pixels=False).fit_transform(dot, 255, np.float64)
    np.testing.assert_allclose(g.sum(), 1)  # normalised kernel, entirely inside the image
    assert g.reshape(5, 5)[2, 2] == g.max()


@pytest.mark.parametrize("bank", list(FILTER_BANKS))
def test_each_bank_independent_reference_and_range(bank):
    u = IMAGES[:5].astype(np.float64) / 255
    pre = Preprocessor(filters=bank, keep_pixels=False).fit(IMAGES, 255)
    X = pre.transform(IMAGES[:5], np.float64)
    for i, k in enumerate(FILTER_BANKS[bank]):
        ref = np.stack([ndimage.correlate(im, k.weights, mode="constant") for im in u])
        np.testing.assert_allclose(X[:, i * 144 : (i + 1) * 144], ref.reshape(5, -1), atol=1e-12)
        assert np.isclose(k.weights.sum(), 0 if k.signed else 1)
    assert X.min() >= -1 - 1e-12 and X.max() <= 1 + 1e-12


def test_documented_widths_on_mnist_shape():
    imgs = np.zeros((2, 28, 28), np.uint8)
    widths = {
        "none": 784,
        "default": 2352,
        "sobel": 2352,
        "prewitt": 2352,
        "laplace": 1568,
        "gauss": 1568,
        "gabor": 3920,
        "all": 8624,
    }
    for spec, width in widths.items():
        assert Preprocessor(filters=spec).fit(imgs, 255).transform(imgs).shape == (2, width)
    pooled = Preprocessor(filters="default", pool=2).fit(imgs, 255)
    assert pooled.n_features_ == 784 + 2 * 196 == 784 + filter_width(DEFAULT_FILTERS, (28, 28), 2)
    assert (
        Preprocessor(filters="gabor", pool=4, keep_pixels=False).fit(imgs, 255).n_features_ == 196
    )


def test_pooling_shape_and_values():
    maps = np.arange(2 * 5 * 5, dtype=np.float64).reshape(2, 5, 5)
    pooled = avg_pool(maps, 2)
    assert pooled.shape == (2, 3, 3)
    assert pooled[0, 0, 0] == np.mean([0, 1, 5, 6])
    assert pooled[0, 2, 2] == 24 / 4  # zero padding at the bottom-right corner
    assert avg_pool(maps, 1) is maps


def test_parse_filters():
    assert parse_filters(None) == parse_filters("none") == parse_filters("") == ()
    assert parse_filters("default") == DEFAULT_FILTERS
    assert parse_filters("sobel, Laplace,sobel") == ("sobel", "laplace")
    assert parse_filters(["gabor", "gauss"]) == ("gabor", "gauss")
    assert parse_filters("all") == tuple(FILTER_BANKS)
    with pytest.raises(ValueError, match="unknown filter bank 'sobol'; choose from: gauss"):
        parse_filters("sobol")


def _sheared_bar(n=1, h=28, w=28, slope=0.5):
    r, c = np.mgrid[:h, :w]
    centre = 13.5 + slope * (r - 13.5)
    bar = (np.abs(c - centre) <= 1.5) & (r >= 4) & (r <= 23)
    return np.repeat((bar * 255).astype(np.uint8)[None], n, axis=0)


def _skew(img):
    r, c = np.mgrid[: img.shape[0], : img.shape[1]]
    m = img.sum()
    cy, cx = (r * img).sum() / m, (c * img).sum() / m
    return ((r - cy) * (c - cx) * img).sum() / ((r - cy) ** 2 * img).sum()


def test_deskew_straightens_sheared_bar():
    bar = _sheared_bar().astype(np.float64) / 255
    assert _skew(bar[0]) == pytest.approx(0.5, abs=0.02)
    out = deskew(bar)
    assert abs(_skew(out[0])) < 0.02
    cols = np.arange(28)
    centres = [(out[0, r] * cols).sum() / out[0, r].sum() for r in range(6, 22)]
    np.testing.assert_allclose(centres, 13.5, atol=0.3)  # vertical, and centred
    assert out.max() <= 1 and out.min() >= 0
    # straight, centred images are left (nearly) alone; blank images are unchanged
    straight = _sheared_bar(slope=0).astype(np.float64)
    np.testing.assert_allclose(deskew(straight), straight, atol=1e-9)
    assert (deskew(np.zeros((2, 5, 5))) == 0).all()


def test_deskew_is_per_image():
    stack = np.concatenate([_sheared_bar(slope=0.5), _sheared_bar(slope=-0.3)]).astype(float)
    together = deskew(stack)
    np.testing.assert_allclose(together[1:], deskew(stack[1:]), atol=1e-12)
    pre = Preprocessor(deskew=True).fit(stack.astype(np.uint8), 255)
    assert pre.transform(stack.astype(np.uint8)).shape == (2, 784)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"scaling": "standard", "filters": "sobel,gabor", "pool": 2},
        {"scaling": "binary", "filters": "default", "deskew": True, "keep_pixels": False},
        {"scaling": "symmetric", "filters": "gauss,laplace", "pool": 5},
    ],
)
def test_state_round_trip(kwargs, tmp_path):
    pre = Preprocessor(**kwargs).fit(IMAGES[:30], 255)
    meta, arrays = pre.get_state()
    np.savez(tmp_path / "p.npz", **arrays)  # what a model file does: JSON + npz, no pickle
    meta = json.loads(json.dumps(meta))
    with np.load(tmp_path / "p.npz", allow_pickle=False) as f:
        loaded = {k: f[k] for k in f.files}
    again = Preprocessor.from_state(meta, loaded)
    np.testing.assert_array_equal(again.transform(IMAGES), pre.transform(IMAGES))
    assert again.n_features_ == pre.n_features_


def test_from_state_refuses_bad_states():
    pre = Preprocessor(scaling="standard", filters="sobel").fit(IMAGES, 255)
    meta, arrays = pre.get_state()
    with pytest.raises(DataError, match="version 2 is not supported"):
        Preprocessor.from_state({**meta, "version": 2}, arrays)
    with pytest.raises(DataError, match=r"unknown keys \['extra'\]"):
        Preprocessor.from_state({**meta, "extra": 1}, arrays)
    with pytest.raises(DataError, match="not a Preprocessor state"):
        Preprocessor.from_state({**meta, "kind": "other"}, arrays)
    with pytest.raises(DataError, match="do not match"):
        Preprocessor.from_state(meta, {**arrays, "junk": np.zeros(1)})
    with pytest.raises(DataError, match="do not match"):
        Preprocessor.from_state(meta, {k: v for k, v in arrays.items() if k != "mean"})
    with pytest.raises(DataError, match="unknown scaling"):
        Preprocessor.from_state({**meta, "scaling": "bogus"}, arrays)
    with pytest.raises(DataError, match="state says 5"):
        Preprocessor.from_state({**meta, "n_features": 5}, arrays)
    with pytest.raises(DataError, match="mean/scale"):
        Preprocessor.from_state(meta, {**arrays, "scale": arrays["scale"][:-1]})


def test_bad_inputs():
    pre = Preprocessor()
    with pytest.raises(DataError, match="not fitted"):
        pre.transform(IMAGES)
    with pytest.raises(DataError, match=r"shape \(n, h, w\), got shape \(40, 144\)"):
        pre.fit(IMAGES.reshape(40, -1), 255)
    nan = IMAGES.astype(float)
    nan[3, 2, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        pre.fit(nan, 255)
    with pytest.raises(DataError, match=r"outside \[0, 16\]"):
        pre.fit(IMAGES, 16)
    with pytest.raises(DataError, match="0 images"):
        pre.fit(IMAGES[:0], 255)
    with pytest.raises(ValueError, match="max_value"):
        pre.fit(IMAGES, 0)
    pre.fit(IMAGES, 255)
    with pytest.raises(DataError, match="fitted on 12x12"):
        pre.transform(np.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match="floating"):
        pre.transform(IMAGES, np.int32)
    with pytest.raises(ValueError, match="unknown scaling 'minmax'"):
        Preprocessor(scaling="minmax")
    with pytest.raises(ValueError, match="pool must be an integer >= 1"):
        Preprocessor(pool=0)
    with pytest.raises(ValueError, match="no features"):
        Preprocessor(keep_pixels=False)
    with pytest.raises(ValueError, match="larger than"):
        Preprocessor(filters="sobel", pool=13).fit(IMAGES, 255)


FEATURES = RNG.normal(size=(50, 4)) * [1, 10, 100, 0] + [0, -5, 1000, 3]  # last one constant


@pytest.mark.parametrize("scaling", ["unit", "symmetric", "binary", "standard"])
def test_features_fitted_range(scaling):
    pre = Preprocessor(scaling=scaling).fit(FEATURES[:40], None)
    assert pre.input_ == "features" and pre.image_shape_ == (4,) and pre.n_features_ == 4
    X = pre.transform(FEATURES[:40], np.float64)
    lo, hi = FEATURES[:40].min(0), FEATURES[:40].max(0)
    u = (FEATURES[:40] - lo) / np.where(hi - lo > 0, hi - lo, 1)
    expected = {
        "unit": u,
        "symmetric": 2 * u - 1,
        "binary": np.where(u >= 0.5, 1.0, -1.0),
        "standard": (u - u.mean(0)) / np.where(u.std(0) > 1e-6, u.std(0), 1),
    }[scaling]
    np.testing.assert_allclose(X, expected, atol=1e-9)
    meta, arrays = pre.get_state()
    again = Preprocessor.from_state(json.loads(json.dumps(meta)), arrays)
    np.testing.assert_array_equal(again.transform(FEATURES), pre.transform(FEATURES))


def test_features_refusals():
    with pytest.raises(DataError, match="filters, deskew and pool need images"):
        Preprocessor(filters="sobel").fit(FEATURES, None)
    with pytest.raises(DataError, match=r"features must have shape \(n, d\)"):
        Preprocessor().fit(IMAGES, None)
    pre = Preprocessor().fit(FEATURES, None)
    with pytest.raises(DataError, match="features of shape 3, but .* fitted on 4"):
        pre.transform(FEATURES[:, :3])
    meta, arrays = pre.get_state()
    with pytest.raises(DataError, match="low/span"):
        Preprocessor.from_state(meta, {**arrays, "span": arrays["span"][:2]})
    with pytest.raises(DataError, match="do not match"):
        Preprocessor.from_state(meta, {})
    # an image state is written as before features existed: no "input" key
    assert "input" not in Preprocessor().fit(IMAGES, 255).get_state()[0]
