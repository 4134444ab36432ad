"""IDX reader/writer: round trips and every malformed-file error."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from ebprop.datasets.idx import IDX_DTYPES, parse_idx, read_idx, write_idx
from ebprop.exceptions import DataError


@pytest.mark.parametrize("code", sorted(IDX_DTYPES))
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_every_dtype(tmp_path, code, suffix):
    dtype = IDX_DTYPES[code].newbyteorder("=")
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype.kind == "u":
        a = np.arange(24, dtype=dtype).reshape(2, 3, 4)
    path = tmp_path / f"a{suffix}"
    write_idx(path, a)
    b = read_idx(path)
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(a, b)
    assert b.flags.writeable


def test_header_is_big_endian_by_hand(tmp_path):
    content = (
        bytes([0, 0, 0x0B, 1]) + (2).to_bytes(4, "big") + (258).to_bytes(2, "big") + b"\xff\xfe"
    )
    (tmp_path / "x").write_bytes(content)
    np.testing.assert_array_equal(read_idx(tmp_path / "x"), [258, -2])


def _header(code=0x08, dims=(2, 2)):
    return bytes([0, 0, code, len(dims)]) + np.asarray(dims, ">u4").tobytes()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x00", "not an IDX file"),
        (b"\x01\x00\x08\x01" + b"\x00" * 8, "bad IDX magic"),
        (_header(code=0x0A) + b"\x00" * 4, "unknown IDX dtype code 0x0A"),
        (bytes([0, 0, 8, 0]), "0 dimensions"),
        (bytes([0, 0, 8, 3]) + b"\x00" * 4, "truncated IDX header"),
        (_header() + b"\x00" * 3, "truncated"),
        (_header() + b"\x00" * 5, "trailing bytes"),
        (_header(code=0x0C) + b"\x00" * 4, "need 16 bytes, file has 4"),
    ],
)
def test_malformed_headers(tmp_path, content, message):
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "t.gz"
    write_idx(path, np.arange(1000, dtype=np.uint8).reshape(10, 100) % 7)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match=r"t\.gz: truncated gzip"):
        read_idx(path)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "c.gz"
    raw = bytearray(gzip.compress(_header(dims=(100,)) + bytes(range(100))))
    raw[-8] ^= 0xFF  # CRC no longer matches
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"c\.gz: corrupt gzip"):
        read_idx(path)
    raw = bytearray(gzip.compress(_header(dims=(100,)) + bytes(range(100))))
    raw[12:16] = b"\xff\xff\xff\xff"  # garbage inside the deflate stream
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="gzip"):
        read_idx(path)


def test_gzip_detected_by_content_not_name(tmp_path):
    path = tmp_path / "no-suffix"
    path.write_bytes(gzip.compress(_header(dims=(3,)) + b"\x01\x02\x03"))
    np.testing.assert_array_equal(read_idx(path), [1, 2, 3])
    assert parse_idx(_header(dims=(1,)) + b"\x07")[0] == 7


def test_write_rejects_unstorable(tmp_path):
    with pytest.raises(ValueError, match="cannot store dtype"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="1 to 255 dimensions"):
        write_idx(tmp_path / "x", np.zeros((), np.uint8))


def test_declared_size_checked_before_decompressing(tmp_path):
    # a few bytes of gzip whose header declares 10^12 bytes: refused on the header alone
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(_header(dims=(100_000, 100_000, 100)) + b"\x00" * 4096))
    with pytest.raises(DataError, match=r"bomb\.gz: IDX header declares .* above the limit"):
        read_idx(path)
    with pytest.raises(DataError, match="above the limit of 3 bytes"):
        parse_idx(_header() + b"\x00" * 4, "plain", max_bytes=3)
    # 255 dims of 2^32 - 1: the product must not overflow into a small number
    huge = bytes([0, 0, 8, 255]) + b"\xff" * 4 * 255
    with pytest.raises(DataError, match="above the limit"):
        parse_idx(huge + b"\x00", "huge")


def test_stream_stops_past_the_declared_size():
    from ebprop.datasets.idx import decompress, idx_content

    # 2x2 bytes declared, 20 MB of zeros after them: decompression stops early, far short of 20 MB
    raw = gzip.compress(_header() + b"\x00" * 4 + b"\x00" * 20_000_000)
    content = idx_content(raw, "trail.gz")
    assert len(content) <= 1 << 20
    with pytest.raises(DataError, match="trailing bytes"):
        parse_idx(content, "trail.gz")
    with pytest.raises(DataError, match="decompresses to more than 1000 bytes"):
        decompress(raw, "x.gz", max_bytes=1000)
    assert len(decompress(raw)) == 12 + 4 + 20_000_000
