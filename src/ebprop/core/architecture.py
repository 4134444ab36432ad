"""The architecture string, e.g. ``"16C5-MP2-32C5-MP2-128"``, and the layer specs it names.

Grammar (tokens joined by ``-``; hidden layers only — the output layer comes from the classes):

=============================  ==========================================================
``<n>C<k>[s<stride>][p<pad>]`` conv: n output channels, k×k kernel, stride (default 1),
                               zero padding on every side (default 0)
``MP<k>``                      k×k max-pool, stride k; remainder rows/columns are dropped
``<n>``                        dense layer of n units (only after every conv/pool layer)
=============================  ==========================================================

Shapes are (height, width, channels) — NHWC without the batch axis. A conv's output side is
⌊(side + 2·pad − k)/stride⌋ + 1; a pool's ⌊side/k⌋.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

Shape = tuple[int, int, int]

_CONV = re.compile(r"^([0-9]+)C([0-9]+)(?:s([0-9]+))?(?:p([0-9]+))?$")
_POOL = re.compile(r"^MP([0-9]+)$")
_DENSE = re.compile(r"^([0-9]+)$")


@dataclass(frozen=True)
class ConvSpec:
    """A k×k convolution with ``channels`` outputs, ``stride`` and zero ``pad`` on each side."""

    channels: int
    kernel: int
    stride: int = 1
    pad: int = 0

    def token(self) -> str:
        stride = f"s{self.stride}" if self.stride != 1 else ""
        pad = f"p{self.pad}" if self.pad != 0 else ""
        return f"{self.channels}C{self.kernel}{stride}{pad}"

    def output_shape(self, shape: Shape) -> Shape:
        height, width, _ = shape
        out_h = (height + 2 * self.pad - self.kernel) // self.stride + 1
        out_w = (width + 2 * self.pad - self.kernel) // self.stride + 1
        if height + 2 * self.pad < self.kernel or width + 2 * self.pad < self.kernel:
            raise ValueError(
                f"architecture token {self.token()!r}: a {self.kernel}x{self.kernel} kernel does "
                f"not fit its {height}x{width} input (pad {self.pad}); use a smaller kernel or "
                "fewer pooling layers"
            )
        return (out_h, out_w, self.channels)


@dataclass(frozen=True)
class PoolSpec:
    """A k×k max-pool with stride k (floor: a remainder that does not fill a window is dropped)."""

    size: int

    def token(self) -> str:
        return f"MP{self.size}"

    def output_shape(self, shape: Shape) -> Shape:
        height, width, channels = shape
        if height < self.size or width < self.size:
            raise ValueError(
                f"architecture token {self.token()!r}: a {self.size}x{self.size} pool does not "
                f"fit its {height}x{width} input; use fewer pooling layers or a smaller one"
            )
        return (height // self.size, width // self.size, channels)


@dataclass(frozen=True)
class DenseSpec:
    """A fully connected layer of ``units`` outputs (its input is flattened in (y, x, c) order)."""

    units: int

    def token(self) -> str:
        return str(self.units)

    def output_shape(self, shape: Shape) -> Shape:
        return (1, 1, self.units)


LayerSpec = ConvSpec | PoolSpec | DenseSpec


def _positive(value: str | None, default: int, token: str, what: str, minimum: int = 1) -> int:
    if value is None:
        return default
    number = int(value)
    if number < minimum:
        raise ValueError(f"architecture token {token!r}: {what} must be >= {minimum}, got {number}")
    return number


def parse_token(token: str) -> LayerSpec:
    """One token → its layer spec; a ``ValueError`` naming the token when it is malformed."""
    if match := _CONV.match(token):
        channels, kernel, stride, pad = match.groups()
        return ConvSpec(
            channels=_positive(channels, 0, token, "the channel count"),
            kernel=_positive(kernel, 0, token, "the kernel size"),
            stride=_positive(stride, 1, token, "the stride"),
            pad=_positive(pad, 0, token, "the padding", minimum=0),
        )
    if match := _POOL.match(token):
        return PoolSpec(size=_positive(match.group(1), 0, token, "the pool size"))
    if match := _DENSE.match(token):
        return DenseSpec(units=_positive(match.group(1), 0, token, "the layer width"))
    raise ValueError(
        f"architecture token {token!r} is not <n>C<k>[s<stride>][p<pad>] (conv), MP<k> (max-pool)"
        " or <n> (dense), e.g. 16C5-MP2-32C5-MP2-128"
    )


def parse_architecture(text: str) -> tuple[LayerSpec, ...]:
    """Parse an architecture string into layer specs (hidden layers only).

    Parameters
    ----------
    text : str
        e.g. ``"16C5-MP2-32C5p2-MP2-128"``; surrounding white space is ignored.

    Returns
    -------
    tuple of ConvSpec | PoolSpec | DenseSpec

    Raises
    ------
    ValueError
        One line naming the bad token: a malformed token, an empty string or token, or a
        conv/pool layer after a dense one.
    """
    if not isinstance(text, str):
        raise ValueError(f"architecture must be a string such as '16C5-MP2-128', got {text!r}")
    stripped = text.strip()
    if not stripped:
        raise ValueError("architecture is empty; give hidden layers such as '16C5-MP2-128'")
    specs: list[LayerSpec] = []
    for token in stripped.split("-"):
        if not token:
            raise ValueError(
                f"architecture {text!r} has an empty token (two '-' in a row or one at an end)"
            )
        spec = parse_token(token)
        if not isinstance(spec, DenseSpec) and any(isinstance(s, DenseSpec) for s in specs):
            raise ValueError(
                f"architecture token {token!r} comes after a dense layer; conv and pool layers "
                "must all come before the dense ones"
            )
        specs.append(spec)
    return tuple(specs)


def format_architecture(specs: Sequence[LayerSpec]) -> str:
    """The canonical string of ``specs`` (``parse_architecture`` inverts it exactly)."""
    return "-".join(spec.token() for spec in specs)


def is_convolutional(specs: Sequence[LayerSpec]) -> bool:
    """True when some layer is a conv or pool layer (a plain MLP otherwise)."""
    return any(not isinstance(s, DenseSpec) for s in specs)


def layer_shapes(specs: Sequence[LayerSpec], input_shape: Shape) -> list[Shape]:
    """The output shape of every layer, in order, for inputs of ``input_shape`` (H, W, C).

    Raises
    ------
    ValueError
        When a kernel or pool window does not fit its input, naming the token; or when the input
        shape is not three positive integers.
    """
    if len(input_shape) != 3 or any(int(d) < 1 for d in input_shape):
        raise ValueError(f"input shape must be (height, width, channels) >= 1, got {input_shape}")
    shape: Shape = tuple(int(d) for d in input_shape)  # type: ignore[assignment]
    shapes = []
    for spec in specs:
        shape = spec.output_shape(shape)
        shapes.append(shape)
    return shapes


def dense_sizes(specs: Sequence[LayerSpec]) -> tuple[int, ...] | None:
    """The hidden widths when every layer is dense (an MLP), else None."""
    if is_convolutional(specs):
        return None
    return tuple(s.units for s in specs)  # type: ignore[union-attr]
