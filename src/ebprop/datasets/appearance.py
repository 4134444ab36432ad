"""How a model's input images looked when it was trained: polarity, colour, alpha, size.

A model file (format 2) and a ``.ebpb`` file record this as their header field ``input``, so that
``ebprop predict`` reads new image files exactly as the training images were read, instead of
guessing (a model trained on dark ink on white must not see its inputs inverted)::

    {"polarity": "light_on_dark" | "dark_on_light",
     "colour": "grey" | "rgb",       # grey: colour files read as ITU-R 601-2 luma;
                                     # rgb: their three channels (option ``color``)
     "alpha": "composite",           # transparent pixels composited on ``background``
     "background": [r, g, b],        # 0..255 each
     "image_shape": [h, w] | [h, w, 3],
     "max_value": m,                 # full-scale raw pixel value (255, 65535, 16 ...)
     "mean_intensity": f,            # mean pixel / m over the training images, 0..1
     "mean_intensity_std": f,        # spread of the per-image means, 0..1
     "border_mean": f}               # mean of the border pixels / m, 0..1

Polarity is decided by the border: an image whose border pixels (all channels of an RGB image)
average above half of the full scale is dark on light.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "InputAppearanceWarning",
    "POLARITIES",
    "appearance_text",
    "appearance_warning",
    "check_appearance",
    "describe_images",
    "image_border_mean",
    "image_polarity",
    "parse_background",
]

POLARITIES = ("light_on_dark", "dark_on_light")
#: The recorded ``colour``: by the image shape, (h, w) grey and (h, w, 3) RGB.
COLOURS = ("grey", "rgb")


class InputAppearanceWarning(UserWarning):
    """An input image looks unlike the model's training images (polarity, mean intensity)."""


#: Named background colours for compositing transparent pixels (the option ``background``).
BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0)}
_KEYS = {
    "polarity",
    "colour",
    "alpha",
    "background",
    "image_shape",
    "max_value",
    "mean_intensity",
    "mean_intensity_std",
    "border_mean",
}


def parse_background(value: Any) -> tuple[int, int, int]:
    """``"white"``, ``"black"``, ``"#rrggbb"``, a grey level ``0..255`` or an (r, g, b) triple
    as an RGB triple (the option ``background``).

    Raises
    ------
    ValueError
        Naming the option and the accepted forms.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text in BACKGROUNDS:
            return BACKGROUNDS[text]
        if text.startswith("#") and len(text) == 7:
            try:
                return tuple(int(text[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
            except ValueError:
                pass
        elif text.isdigit() and int(text) <= 255:
            return (int(text),) * 3
    elif isinstance(value, (list, tuple)) and len(value) == 3:
        if all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value):
            return tuple(value)  # type: ignore[return-value]
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255:
        return (value,) * 3
    raise ValueError(
        f"background: {value!r} is not a colour; give white, black, #rrggbb or a grey level 0..255"
    )


def image_border_mean(images: np.ndarray) -> np.ndarray:
    """Mean of the border pixels of each image, shape (n,), for images (n, h, w), or
    (n, h, w, c) with all channels of the border averaged."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 4:
        images = images.mean(axis=3)  # the border's mean over its channels
    h, w = images.shape[1:]
    total = images[:, 0, :].sum(1) + images[:, -1, :].sum(1)
    count = 2 * w
    if h > 2:
        total += images[:, 1:-1, 0].sum(1) + images[:, 1:-1, -1].sum(1)
        count += 2 * (h - 2)
    return total / count


def image_polarity(raw: np.ndarray, max_value: float) -> str:
    """``"dark_on_light"`` when the border of image ``raw`` (h, w) or (h, w, c) averages above
    half of ``max_value``, else ``"light_on_dark"``."""
    border = float(image_border_mean(np.asarray(raw)[None])[0])
    return "dark_on_light" if border > max_value / 2 else "light_on_dark"


def describe_images(
    images: np.ndarray, max_value: float, background: tuple[int, int, int] = (255, 255, 255)
) -> dict:
    """The ``input`` header field for raw training images (n, h, w), or RGB (n, h, w, 3), in
    ``0..max_value``."""
    images = np.asarray(images)
    rgb = images.ndim == 4 and images.shape[3] == 3
    if not (images.ndim == 3 or rgb) or len(images) == 0:
        raise ValueError(
            f"describe_images needs images (n, h, w) or (n, h, w, 3), got shape {images.shape}"
        )
    scale = float(max_value)
    # chunked: the float64 copy of a whole training set would double its memory
    means, borders = [], []
    for start in range(0, len(images), 4096):
        chunk = np.asarray(images[start : start + 4096], dtype=np.float64) / scale
        means.append(chunk.reshape(len(chunk), -1).mean(1))
        borders.append(image_border_mean(chunk))
    mean, border = np.concatenate(means), np.concatenate(borders)
    return {
        "polarity": "dark_on_light" if float(border.mean()) > 0.5 else "light_on_dark",
        "colour": "rgb" if rgb else "grey",
        "alpha": "composite",
        "background": [int(c) for c in background],
        "image_shape": [int(s) for s in images.shape[1:]],
        "max_value": int(scale) if scale.is_integer() else scale,
        "mean_intensity": round(float(mean.mean()), 6),
        "mean_intensity_std": round(float(mean.std()), 6),
        "border_mean": round(float(border.mean()), 6),
    }


def check_appearance(value: Any) -> dict | None:
    """``value`` when it is a valid ``input`` header field or None; else ValueError saying why."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"'input' must be an object or null, got {type(value).__name__}")
    missing, unknown = _KEYS - set(value), set(value) - _KEYS
    if missing:
        raise ValueError(f"'input' lacks {sorted(missing)}")
    if unknown:
        raise ValueError(f"'input' has unknown keys {sorted(unknown)}")
    if value["polarity"] not in POLARITIES:
        raise ValueError(f"'input.polarity' {value['polarity']!r} is not one of {POLARITIES}")
    if value["colour"] not in COLOURS or value["alpha"] != "composite":
        raise ValueError("'input.colour' must be 'grey' or 'rgb' and 'input.alpha' 'composite'")
    parse_background(value["background"])
    shape = value["image_shape"]
    rank = 3 if value["colour"] == "rgb" else 2
    if not (
        isinstance(shape, list)
        and len(shape) == rank
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
        and (rank == 2 or shape[2] == 3)
    ):
        want = "[h, w, 3]" if rank == 3 else "[h, w]"
        raise ValueError(f"'input.image_shape' must be {want} for {value['colour']}, got {shape!r}")
    for key in ("max_value", "mean_intensity", "mean_intensity_std", "border_mean"):
        v = value[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ValueError(f"'input.{key}' must be a finite number >= 0, got {v!r}")
    if value["max_value"] <= 0:
        raise ValueError("'input.max_value' must be positive")
    return value


def appearance_warning(raw: np.ndarray, appearance: dict, name: str) -> str | None:
    """A one-line warning when image ``raw`` (h, w) or (h, w, 3) in the model's pixel range is
    far from the training images: another polarity, or a mean intensity more than 4 standard
    deviations (at least 0.25 of full scale) away. None when it looks like them."""
    scale = float(appearance["max_value"])
    polarity = image_polarity(raw, scale)
    if polarity != appearance["polarity"]:
        return (
            f"{name}: looks {polarity.replace('_', ' ')}, but the model was trained on "
            f"{appearance['polarity'].replace('_', ' ')} images; check the image, or --invert"
        )
    mean = float(np.mean(raw)) / scale
    limit = max(4 * appearance["mean_intensity_std"], 0.25)
    if abs(mean - appearance["mean_intensity"]) > limit:
        return (
            f"{name}: mean intensity {mean:.2f} is far from the training images' "
            f"{appearance['mean_intensity']:.2f} (of full scale); predictions may be unreliable"
        )
    return None


def appearance_text(appearance: dict | None) -> str:
    """One line for ``ebprop info``: how the training images looked, or that it is unknown."""
    if appearance is None:
        return "not recorded (older model, or features): predict guesses the polarity"
    h, w = appearance["image_shape"][:2]
    r, g, b = appearance["background"]
    background = {(255, 255, 255): "white", (0, 0, 0): "black"}.get(
        (r, g, b), f"#{r:02x}{g:02x}{b:02x}"
    )
    return (
        f"{appearance['polarity'].replace('_', ' ')}, {appearance['colour']}, alpha composited "
        f"on {background}, {h}x{w}, pixels 0..{appearance['max_value']}, mean intensity "
        f"{appearance['mean_intensity']:.2f}"
    )
