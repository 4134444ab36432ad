"""read_image: greyscale at full bit depth, one-line errors, limits before decoding."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from ebprop.datasets.images import read_image, rescale, resize_image
from ebprop.exceptions import DataError


def test_modes(tmp_path):
    levels = (np.arange(12).reshape(3, 4) * 5000 + 3).astype(np.uint16)
    Image.fromarray(levels).save(tmp_path / "g16.png")
    image, m = read_image(tmp_path / "g16.png")
    assert m == 65535 and image.dtype == np.uint16
    np.testing.assert_array_equal(image, levels)

    Image.fromarray(levels.astype(np.int32)).save(tmp_path / "i32.tif")  # mode I
    image, m = read_image(tmp_path / "i32.tif")
    np.testing.assert_array_equal(image, levels)
    assert m == 65535

    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 255  # pure red: luma 0.299 * 255
    Image.fromarray(rgb).save(tmp_path / "red.png")
    image, m = read_image(tmp_path / "red.png")
    assert m == 255 and image.dtype == np.uint8 and (image == 76).all()

    Image.fromarray(np.eye(4, dtype=bool)).save(tmp_path / "bits.png")  # mode 1
    image, m = read_image(tmp_path / "bits.png")
    np.testing.assert_array_equal(image, np.eye(4) * 255)

    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.gif")
    assert read_image(tmp_path / "pal.gif")[1] == 255


def test_refusals(tmp_path):
    Image.fromarray(np.ones((2, 2), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(DataError, match=r"f\.tif: floating-point image"):
        read_image(tmp_path / "f.tif")
    Image.fromarray(np.full((2, 2), 70000, np.int32)).save(tmp_path / "big.tif")
    with pytest.raises(DataError, match="outside 0..65535"):
        read_image(tmp_path / "big.tif")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "ok.png")
    with pytest.raises(DataError, match=r"ok\.png: image of 4x4 pixels is above the limit of 15"):
        read_image(tmp_path / "ok.png", max_pixels=15)
    raw = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"cut\.png: unreadable image"):
        read_image(tmp_path / "cut.png")
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")


def test_rescale_and_resize():
    eight = np.array([[0, 1, 128, 255]], np.uint8)
    np.testing.assert_array_equal(rescale(eight, 255, 65535), [[0, 257, 32896, 65535]])
    assert rescale(eight, 255, 65535).dtype == np.uint16
    np.testing.assert_array_equal(rescale(rescale(eight, 255, 65535), 65535, 255), eight)
    flat = np.full((6, 6), 40000, np.uint16)
    out = resize_image(flat, (3, 2), 65535)
    assert out.shape == (3, 2) and out.dtype == np.uint16 and (out == 40000).all()
    assert resize_image(flat, (6, 6), 65535) is flat


def test_prepare_image_for_a_model(tmp_path):
    from ebprop.datasets.images import prepare_image

    levels = (np.arange(64).reshape(8, 8) * 1000 + 7).astype(np.uint16)
    Image.fromarray(levels).save(tmp_path / "g16.png")
    np.testing.assert_array_equal(prepare_image(tmp_path / "g16.png", (8, 8), 65535), levels)
    eight = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(eight).save(tmp_path / "g8.png")
    digits = prepare_image(tmp_path / "g8.png", (8, 8), 16)  # a digits model: 0..16
    np.testing.assert_array_equal(digits, np.rint(eight.astype(float) * 16 / 255))
    assert prepare_image(tmp_path / "g8.png", (4, 2), 255).shape == (4, 2)
    # A model trained on float images in [0, 1] keeps every grey level (not rounded to 0 or 1).
    unit = prepare_image(tmp_path / "g8.png", (8, 8), 1.0)
    np.testing.assert_allclose(unit, eight / 255.0)
    assert len(np.unique(unit)) == 64
    np.testing.assert_allclose(prepare_image(tmp_path / "g8.png", (8, 8), 2.5), eight / 102.0)


def test_parse_image_size():
    from ebprop.datasets.images import parse_image_size

    assert parse_image_size("32x24") == (32, 24) and parse_image_size("28") == (28, 28)
    assert parse_image_size("16X16") == (16, 16)
    for bad in ("", "0x3", "axb", "1x2x3", "-4x4"):
        with pytest.raises(ValueError, match="HEIGHTxWIDTH"):
            parse_image_size(bad)


def test_16_bit_colour_is_refused_not_truncated(tmp_path):
    # Pillow reads 48-bit RGB PNGs as 8-bit RGB; a hand-made one must be refused, not truncated
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    pixels = np.array([[[1000, 1000, 1000], [65535, 300, 300]]], ">u2")
    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    (tmp_path / "rgb48.png").write_bytes(png)
    with pytest.raises(DataError, match=r"rgb48\.png: 16-bit colour image"):
        read_image(tmp_path / "rgb48.png")
