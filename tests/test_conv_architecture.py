"""The architecture string: parsing, shapes, errors naming the bad token, round trip."""

from __future__ import annotations

import pytest

from ebprop.core.architecture import (
    ConvSpec,
    DenseSpec,
    PoolSpec,
    dense_sizes,
    format_architecture,
    is_convolutional,
    layer_shapes,
    parse_architecture,
)


def test_parse_the_issues_example():
    specs = parse_architecture("16C5-MP2-32C5-MP2-128")
    assert specs == (ConvSpec(16, 5), PoolSpec(2), ConvSpec(32, 5), PoolSpec(2), DenseSpec(128))


def test_stride_and_padding():
    assert parse_architecture("8C3s2p1") == (ConvSpec(8, 3, stride=2, pad=1),)
    assert parse_architecture("8C3p2") == (ConvSpec(8, 3, stride=1, pad=2),)
    assert parse_architecture(" 8C3s2 ") == (ConvSpec(8, 3, stride=2, pad=0),)


@pytest.mark.parametrize(
    "text",
    ["16C5-MP2-32C5-MP2-128", "8C3s2p1-4C1-100-10", "500-500", "7", "1C1s1p0"],
)
def test_round_trip(text):
    specs = parse_architecture(text)
    canonical = format_architecture(specs)
    assert parse_architecture(canonical) == specs
    assert format_architecture(parse_architecture(canonical)) == canonical


def test_canonical_form_drops_defaults():
    assert format_architecture(parse_architecture("8C3s1p0-MP2-64")) == "8C3-MP2-64"


def test_shapes_mnist():
    specs = parse_architecture("16C5-MP2-32C5-MP2-128")
    assert layer_shapes(specs, (28, 28, 1)) == [
        (24, 24, 16),
        (12, 12, 16),
        (8, 8, 32),
        (4, 4, 32),
        (1, 1, 128),
    ]


def test_shapes_stride_pad_and_floor_pool():
    # (8 + 2·1 − 3)//2 + 1 = 4; pool 3 on 4×4 floors to 1×1.
    assert layer_shapes(parse_architecture("5C3s2p1-MP3"), (8, 8, 3)) == [(4, 4, 5), (1, 1, 5)]
    # non-square input: (7 − 3)//1 + 1 = 5, (9 − 3) + 1 = 7
    assert layer_shapes(parse_architecture("2C3"), (7, 9, 1)) == [(5, 7, 2)]


def test_mlp_helpers():
    assert dense_sizes(parse_architecture("500-300")) == (500, 300)
    assert dense_sizes(parse_architecture("4C3-30")) is None
    assert not is_convolutional(parse_architecture("500"))
    assert is_convolutional(parse_architecture("MP2"))


@pytest.mark.parametrize(
    ("text", "bad"),
    [
        ("16C5-MQ2-10", "'MQ2'"),
        ("16c5", "'16c5'"),
        ("16C", "'16C'"),
        ("C5", "'C5'"),
        ("16C5x", "'16C5x'"),
        ("0C5", "'0C5'"),
        ("16C0", "'16C0'"),
        ("16C5s0", "'16C5s0'"),
        ("MP0", "'MP0'"),
        ("0", "'0'"),
        ("16C5p1s2", "'16C5p1s2'"),  # stride before pad
        ("-8", "empty token"),
        ("8--8", "empty token"),
        ("128-16C5", "'16C5'"),
        ("128-MP2", "'MP2'"),
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_errors_name_the_bad_token(text, bad):
    with pytest.raises(ValueError) as info:
        parse_architecture(text)
    message = str(info.value)
    assert bad in message
    assert "\n" not in message


def test_not_a_string():
    with pytest.raises(ValueError, match="must be a string"):
        parse_architecture(128)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "shape", "bad"),
    [
        ("16C5-MP2-32C5-MP2-32C5", (28, 28, 1), "'32C5'"),
        ("MP3-MP3-MP3", (8, 8, 1), "'MP3'"),
        ("4C9", (8, 8, 1), "'4C9'"),
    ],
)
def test_shape_errors_name_the_token(text, shape, bad):
    with pytest.raises(ValueError) as info:
        layer_shapes(parse_architecture(text), shape)
    assert bad in str(info.value)
    assert "\n" not in str(info.value)


def test_padding_lets_a_large_kernel_fit():
    assert layer_shapes(parse_architecture("4C9p1"), (8, 8, 1)) == [(2, 2, 4)]


@pytest.mark.parametrize("shape", [(8, 8), (0, 8, 1), (8, 8, -1)])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError, match="input shape"):
        layer_shapes(parse_architecture("4C3"), shape)
