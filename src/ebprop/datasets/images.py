"""Read image files as grey or RGB arrays at their full bit depth, refusing oversize ones early.

One reader for training folders and for ``ebprop predict``: :func:`read_image` decodes a file
into a ``uint8`` (8-bit, ``max_value`` 255) or ``uint16`` (16-bit, ``max_value`` 65535) array of
shape (h, w), or (h, w, 3) with ``color="rgb"``,
:func:`resize_image` brings it to a stated size, and :func:`rescale` to another bit depth;
:func:`prepare_image` does all three for a model's input.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ebprop.exceptions import DataError

__all__ = [
    "COLORS",
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_PIXELS",
    "parse_image_size",
    "prepare_image",
    "read_image",
    "rescale",
    "resize_image",
]

#: File name suffixes read as images (case-insensitive); other files in a class folder are ignored.
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".pbm", ".ppm"}
)
#: How image files are read (the option ``color``): ``grey`` as luma (h, w), ``rgb`` keeping
#: their three channels (h, w, 3), which a colour CNN sees as 3 input channels.
COLORS = ("grey", "rgb")
#: Default limit on ``width * height`` of one image (4096 x 4096), checked on the header before
#: the pixels are decoded.
MAX_IMAGE_PIXELS = 4096 * 4096

# Pillow modes holding 16-bit grey levels; "I" (32-bit) is how some versions open 16-bit PNGs.
_MODES_16 = {"I;16", "I;16L", "I;16B", "I;16N"}


def read_image(
    path: str | os.PathLike,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
    color: str = "grey",
) -> tuple[np.ndarray, int]:
    """Decode an image file into grey (or RGB) at its full bit depth.

    With ``color="grey"`` colour images are converted to luma (ITU-R 601-2, Pillow's
    ``convert("L")``); with ``color="rgb"`` every file gives its red, green and blue channels
    (Pillow's ``convert("RGB")``; a grey file repeats its grey level in the three). An image with
    transparency is first composited on ``background`` (RGB, default white), so a drawing on a
    transparent page reads as it is seen, not as black; 1-bit images become 0/255. 16-bit
    greyscale files (PNG, TIFF, PGM) keep all their grey levels. Multi-frame files give their
    first frame.

    Parameters
    ----------
    path : str or PathLike
        The image file (any format Pillow reads).
    max_pixels : int
        Largest ``width * height`` accepted. Checked on the header, before decoding, so a
        decompression bomb costs nothing. Pillow's own limit (about 179 million pixels) applies
        above it.

    Returns
    -------
    image : numpy.ndarray
        Shape (h, w), dtype uint8 or uint16.
    max_value : int
        255 for uint8, 65535 for uint16.

    Raises
    ------
    DataError
        One line naming the file: not an image, truncated or corrupt, too large, or a
        floating-point / 32-bit image that has no fixed grey range.
    FileNotFoundError
        If ``path`` does not exist.
    """
    from PIL import Image  # imported here: only image data needs Pillow

    if color not in COLORS:
        raise ValueError(f"color must be one of {', '.join(COLORS)}, got {color!r}")
    mode_out = "L" if color == "grey" else "RGB"
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # our own, lower limit below replaces Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise DataError(
                        f"{path}: image of {w}x{h} pixels is above the limit of {max_pixels} "
                        "pixels; shrink it, or raise max_pixels if it is genuine"
                    )
                mode = im.mode
                if mode not in _MODES_16 and mode != "I" and _rawmode_is_16_bit(im):
                    raise DataError(
                        f"{path}: 16-bit colour image, which Pillow reads as 8-bit only; save it "
                        "as 16-bit greyscale to keep its depth, or as 8-bit"
                    )
                if mode in _MODES_16 or mode == "I":
                    image = np.array(im)
                elif mode == "F":
                    raise DataError(
                        f"{path}: floating-point image (mode F) has no fixed grey range; "
                        "save it as 8- or 16-bit"
                    )
                elif mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
                    rgba = im.convert("RGBA")
                    page = Image.new("RGBA", rgba.size, tuple(background) + (255,))
                    image = np.array(Image.alpha_composite(page, rgba).convert(mode_out))
                else:
                    image = np.array(im if mode == mode_out else im.convert(mode_out))
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: refused as a decompression bomb ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if isinstance(exc, DataError):
            raise
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: unreadable image ({reason}); remove or replace the file") from exc
    if image.dtype == np.uint8:
        return image, 255
    if image.size and (image.min() < 0 or image.max() > 65535):
        raise DataError(
            f"{path}: 32-bit integer image with values outside 0..65535; save it as 8- or 16-bit"
        )
    image = image.astype(np.uint16)
    if color == "rgb":  # 16-bit grey: its level in each channel
        image = np.repeat(image[:, :, None], 3, axis=2)
    return image, 65535


def _rawmode_is_16_bit(im) -> bool:
    """Whether the file stores 16 bits per sample in a mode Pillow reduces to 8 (e.g. RGB;16B)."""
    for tile in im.tile or ():
        args = tile[3] if len(tile) > 3 else None
        rawmode = args if isinstance(args, str) else (args[0] if args else "")
        if isinstance(rawmode, str) and ";16" in rawmode:
            return True
    return False


def rescale(image: np.ndarray, max_value: int, target_max: int) -> np.ndarray:
    """Map grey levels from ``0..max_value`` to ``0..target_max`` (rounded).

    8 to 16 bits multiplies by 257 exactly (255 -> 65535); 16 to 8 bits rounds.

    Parameters
    ----------
    image : numpy.ndarray
        Integer grey levels in ``0..max_value``, any shape.
    max_value, target_max : int
        Full-scale values of the input and of the output (255 or 65535).

    Returns
    -------
    numpy.ndarray
        uint8 when ``target_max <= 255``, else uint16.
    """
    dtype = np.uint8 if target_max <= 255 else np.uint16
    if max_value == target_max:
        return image.astype(dtype, copy=False)
    if target_max % max_value == 0:  # exact integer scale-up
        return (image.astype(np.uint32) * (target_max // max_value)).astype(dtype)
    scaled = np.rint(image.astype(np.float64) * (target_max / max_value))
    return np.clip(scaled, 0, target_max).astype(dtype)


def resize_image(image: np.ndarray, size: tuple[int, int], max_value: int) -> np.ndarray:
    """Resize an image to ``size = (h, w)`` at its bit depth (Lanczos, no aspect kept).

    The image is resampled as 32-bit float, so 16-bit grey levels survive, then rounded and
    clipped to ``0..max_value``; a colour image channel by channel.

    Parameters
    ----------
    image : numpy.ndarray
        Shape (h0, w0), or (h0, w0, c) with channels last; integer levels.
    size : tuple of int
        Target ``(h, w)``.
    max_value : int
        Full-scale value of the image.

    Returns
    -------
    numpy.ndarray
        Shape ``size`` (+ the channels), same dtype as ``image``.
    """
    from PIL import Image

    h, w = size
    if image.shape[:2] == (h, w):
        return image
    if image.ndim == 3:
        planes = [resize_image(image[:, :, c], size, max_value) for c in range(image.shape[2])]
        return np.stack(planes, axis=2)
    resized = Image.fromarray(image.astype(np.float32)).resize((w, h), Image.Resampling.LANCZOS)
    return np.clip(np.rint(np.asarray(resized)), 0, max_value).astype(image.dtype)


def prepare_image(
    path: str | os.PathLike,
    image_shape: tuple[int, ...],
    max_value: float,
    *,
    max_pixels: int = MAX_IMAGE_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """An image file as a model's raw input: decoded, resized to ``image_shape``, rescaled.

    :func:`read_image` (RGB when ``image_shape`` is ``(h, w, 3)``, else grey), then
    :func:`resize_image` at the file's own bit depth, then :func:`rescale` to the model's
    ``max_value`` (the ``Preprocessor.max_value_`` it was trained
    with: 255, 65535, or 16 for digits). Inverting dark-on-light images is left to the caller.

    Returns
    -------
    numpy.ndarray
        Shape ``image_shape``: integer grey levels in ``0..max_value`` when ``max_value`` is a
        whole number ≥ 2; otherwise (a model trained on float or bool images, ``max_value`` 1 or
        not whole) float64 values ``level / depth · max_value``, so that no grey level is
        rounded away (a black-and-white file still gives exactly 0 and ``max_value``).
    """
    color = "rgb" if len(image_shape) == 3 else "grey"
    image, depth = read_image(path, max_pixels=max_pixels, background=background, color=color)
    resized = resize_image(image, tuple(image_shape[:2]), depth)
    if float(max_value).is_integer() and max_value >= 2:
        return rescale(resized, depth, int(max_value))
    return resized.astype(np.float64) * (float(max_value) / depth)


def parse_image_size(text: str) -> tuple[int, int]:
    """``"32x24"`` (height x width; ``"32"`` for a square) -> ``(32, 24)``, for a CLI option.

    Raises
    ------
    ValueError
        If the text is not one or two positive integers separated by ``x``.
    """
    parts = text.lower().replace("×", "x").split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) == 1:
        sizes *= 2
    if len(sizes) != 2 or min(sizes) < 1:
        raise ValueError(f"image size {text!r}: give HEIGHTxWIDTH in pixels, e.g. 28x28")
    return sizes[0], sizes[1]
