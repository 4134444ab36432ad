"""The ``.ebpb`` file: a packed binary network, versioned, checksummed, little-endian.

Layout (format version 2; version 1 files are still read; all integers little-endian)::

    offset  size  field
    0       8     magic  b"\\x89EBPB\\r\\n\\x1a"  (the high byte and CR/LF catch text-mode copies)
    8       2     uint16 format version (2; 1 is still read)
    10      2     uint16 byte-order mark 0xFEFF (bytes FF FE; FE FF would mean a big-endian file)
    12      4     uint32 header length H (bytes of UTF-8 JSON, space-padded so the payload
                  starts on a 64-byte boundary)
    16      8     uint64 payload length P
    24      32    SHA-256 of header bytes + payload
    56      H     JSON header (below)
    56+H    P     payload: the arrays, each at an 8-byte-aligned offset, C order, little-endian

The file is exactly 56 + H + P bytes. JSON header keys::

    format        "ebprop.packed"
    byte_order    "little"
    word_bits     64
    sizes         [n_0, ..., n_L]  (n_0 = pixels per image; at least one hidden layer)
    preprocessing {"input": "uint8", "scaling": "unit"|"symmetric", "max_value": m,
                   "image_shape": [h, w]}
    classes       JSON list of the L-th layer's class labels (ints, floats or strings)
    class_names   (v2) one unique name per class, by class index (v1: str(label))
    input         (v2) how the training images looked, or null (ebprop.datasets.appearance)
    output_dtype  "float32"|"float64"  (the dtype of the output bias and of the argmax)
    arrays        [{"name", "dtype", "shape", "offset", "nbytes"}, ...]:
                  weights_<l>    uint64 (n_{l+1}, ceil(n_l / 64))  bit 1 ↔ +1, padding bits 0
                  thresholds_<l> int16/32/64 (n_{l+1},)  for l < L−1: unit fires iff dot ≥ T
                  output_bias    output_dtype (n_L,)
    source        free-form JSON (where the model came from)
    layers        optional: the hidden layers of a convolutional model, in order, each
                  {"kind": "conv", "channels", "kernel", "stride", "pad"}, {"kind": "maxpool",
                  "size"} or {"kind": "dense", "units"} (see :mod:`ebprop.packed.conv`). Then
                  image_shape may be [h, w, c]; sizes lists the flat input width of every
                  weighted layer and the outputs; weights_<l> of a conv is (C_out,
                  ceil(k*k*C_in / 64)), rows (ky, kx, c_in); thresholds_<l> (C_out,). Absent
                  (and absent in version-1 files): a multilayer perceptron.

Readers must refuse anything they do not fully understand: :func:`read_packed` raises
:class:`~ebprop.exceptions.ModelFormatError` naming the file and the problem.

An OPTIONAL header field (no version bump) is one entry ``name: (default, check)`` in
:data:`ebprop.packed.header_fields.OPTIONAL_FIELDS`; it travels in ``PackedModel.fields``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import ModelFormatError
from ..fileio import atomic_write_bytes, loads_header
from . import conv
from .header_fields import OPTIONAL_FIELDS, check_known, check_names, read_fields
from .pack import n_words, padding_is_zero

MAGIC = b"\x89EBPB\r\n\x1a"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
FORMAT_NAME = "ebprop.packed"
_PREAMBLE = struct.Struct("<8sHHIQ32s")  # 56 bytes
_BOM = 0xFEFF
_ALIGN = 64
SCALINGS = ("unit", "symmetric")
_THRESHOLD_DTYPES = ("<i2", "<i4", "<i8")
# Sane limits, checked before anything is allocated: a few-byte file declaring a huge header or
# payload, or a header declaring huge arrays, is refused instead of read into memory.
MAX_HEADER_BYTES = 16 << 20
MAX_PAYLOAD_BYTES = 1 << 30  # 1 GiB: 8·10^9 one-bit weights
MAX_UNITS = 1 << 20  # per layer
MAX_LAYERS = 64
_OUTPUT_DTYPES = {"float32": "<f4", "float64": "<f8"}
_REQUIRED = ("format", "byte_order", "word_bits", "sizes", "preprocessing", "classes",
             "output_dtype", "arrays")  # fmt: skip


@dataclass
class PackedModel:
    """The content of a ``.ebpb`` file, validated (see the module docstring for meanings).

    Attributes
    ----------
    sizes : tuple of int
        (n_0, ..., n_L).
    weights : list of ndarray uint64, each (n_{l+1}, ceil(n_l / 64))
    thresholds : list of ndarray int, each (n_{l+1},), for the L − 1 hidden layers
    output_bias : ndarray (n_L,), float32 or float64
    classes : ndarray (n_classes,)
    preprocessing : dict
    source : dict
    class_names : tuple of str or None, one unique name per class (see :attr:`names`)
    input : dict or None
        How the training images looked (:mod:`ebprop.datasets.appearance`), when recorded.
    fields : dict
        The optional header fields of :data:`OPTIONAL_FIELDS`, by name.
    layers : list of dict or None
        The hidden layers of a convolutional model (:func:`ebprop.packed.conv.plan`); None for
        a multilayer perceptron.
    """

    sizes: tuple[int, ...]
    weights: list[np.ndarray]
    thresholds: list[np.ndarray]
    output_bias: np.ndarray
    classes: np.ndarray
    preprocessing: dict
    source: dict = field(default_factory=dict)
    layers: list | None = None
    class_names: tuple[str, ...] | None = None
    input: dict | None = None
    fields: dict = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        """The name of each class, by class index (``str(label)`` when none are stored)."""
        return tuple(self.class_names or (str(c) for c in self.classes.tolist()))


def _align(n: int, to: int) -> int:
    return -(-n // to) * to


def encode_packed(model: PackedModel) -> bytes:
    """The bytes of a ``.ebpb`` file holding ``model`` (validated first)."""
    validate_model(model, "<in memory>")
    arrays: list[tuple[str, np.ndarray]] = []
    for layer, w in enumerate(model.weights):
        arrays.append((f"weights_{layer}", w.astype("<u8", copy=False)))
    for layer, t in enumerate(model.thresholds):
        arrays.append((f"thresholds_{layer}", t.astype(t.dtype.newbyteorder("<"), copy=False)))
    arrays.append(
        ("output_bias", model.output_bias.astype(model.output_bias.dtype.newbyteorder("<")))
    )
    table, chunks, offset = [], [], 0
    for name, arr in arrays:
        start = _align(offset, 8)
        chunks.append(b"\0" * (start - offset))
        data = np.ascontiguousarray(arr).tobytes()
        table.append(
            {
                "name": name,
                "dtype": arr.dtype.str,
                "shape": list(arr.shape),
                "offset": start,
                "nbytes": len(data),
            }
        )
        chunks.append(data)
        offset = start + len(data)
    payload = b"".join(chunks)
    header = {
        "format": FORMAT_NAME,
        "byte_order": "little",
        "word_bits": 64,
        "sizes": list(model.sizes),
        "preprocessing": model.preprocessing,
        "classes": model.classes.tolist(),
        "output_dtype": model.output_bias.dtype.name,
        "arrays": table,
        "source": model.source,
        "class_names": list(model.names),
        "input": model.input,
    }
    for key, (default, check) in OPTIONAL_FIELDS.items():
        header[key] = check(model.fields.get(key, default))
    if model.layers is not None:
        header["layers"] = model.layers
    text = json.dumps(header, allow_nan=False, sort_keys=True).encode("utf-8")
    text += b" " * (_align(_PREAMBLE.size + len(text), _ALIGN) - _PREAMBLE.size - len(text))
    digest = hashlib.sha256(text + payload).digest()
    pre = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, _BOM, len(text), len(payload), digest)
    return pre + text + payload


def write_packed(path: str | os.PathLike, model: PackedModel) -> int:
    """Write ``model`` to ``path`` atomically; returns the file size in bytes."""
    data = encode_packed(model)
    atomic_write_bytes(path, data)
    return len(data)


def read_packed(path: str | os.PathLike) -> PackedModel:
    """Read and fully validate a ``.ebpb`` file.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ModelFormatError
        On a wrong magic, an unsupported version or byte order, a truncated or over-long file,
        a checksum mismatch, or a header/array that is inconsistent.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        pre = fh.read(_PREAMBLE.size)
        if len(pre) == _PREAMBLE.size:  # else decode_packed reports the truncation
            _, _, _, h_len, p_len, _ = _PREAMBLE.unpack(pre)
            _check_lengths(h_len, p_len, str(path))
            size, expected = os.fstat(fh.fileno()).st_size, _PREAMBLE.size + h_len + p_len
            if size != expected:
                what = "truncated" if size < expected else "has trailing bytes"
                raise ModelFormatError(
                    f"{path}: file {what}: {size} bytes, the header says {expected}"
                )
        data = pre + fh.read()
    return decode_packed(data, str(path))


def _check_lengths(h_len: int, p_len: int, source: str) -> None:
    if h_len > MAX_HEADER_BYTES or p_len > MAX_PAYLOAD_BYTES:
        raise ModelFormatError(
            f"{source}: declares a {h_len:,}-byte header and a {p_len:,}-byte payload, over the "
            f"limits ({MAX_HEADER_BYTES:,} and {MAX_PAYLOAD_BYTES:,} bytes); not a model this "
            "reader accepts (corrupt file?)"
        )


def decode_packed(data: bytes, source: str = "<bytes>") -> PackedModel:
    """Inverse of :func:`encode_packed`; see :func:`read_packed` for the errors."""
    if len(data) < _PREAMBLE.size:
        raise ModelFormatError(
            f"{source}: {len(data)} bytes is too short for a .ebpb file (truncated?)"
        )
    magic, version, bom, h_len, p_len, digest = _PREAMBLE.unpack_from(data)
    if magic != MAGIC:
        raise ModelFormatError(f"{source}: not a packed ebprop model (bad magic {magic!r})")
    if bom != _BOM:
        if bom == 0xFFFE:
            raise ModelFormatError(f"{source}: big-endian .ebpb files are not supported")
        raise ModelFormatError(f"{source}: bad byte-order mark {bom:#06x}")
    if version not in READABLE_VERSIONS:
        raise ModelFormatError(
            f"{source}: format version {version} is not supported (this ebprop reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}); upgrade ebprop or re-export the model"
        )
    _check_lengths(h_len, p_len, source)
    expected = _PREAMBLE.size + h_len + p_len
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise ModelFormatError(
            f"{source}: file {what}: {len(data)} bytes, the header says {expected}"
        )
    body = data[_PREAMBLE.size :]
    if hashlib.sha256(body).digest() != digest:
        raise ModelFormatError(f"{source}: checksum mismatch; the file is corrupt")
    try:
        text = body[:h_len].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFormatError(f"{source}: header is not valid UTF-8 ({exc})") from exc
    header = loads_header(text, source)  # bounded nesting: never a RecursionError
    model = _model_from_header(header, body[h_len:], source, version)
    validate_model(model, source)
    return model


def _require(cond: bool, source: str, message: str) -> None:
    if not cond:
        raise ModelFormatError(f"{source}: {message}")


def _model_from_header(header: Any, payload: bytes, source: str, version: int) -> PackedModel:
    _require(isinstance(header, dict), source, "header must be a JSON object")
    required = _REQUIRED + (("class_names",) if version >= 2 else ())
    for key in required:
        _require(key in header, source, f"header lacks {key!r}")
    check_known(header, required, version, source)
    _require(
        version >= 2 or "layers" not in header,
        source,
        "a version-1 file cannot hold a convolutional model ('layers'); re-export it",
    )
    _require(header["format"] == FORMAT_NAME, source, f"format is {header['format']!r}")
    _require(header["byte_order"] == "little", source, "byte_order must be 'little'")
    _require(header["word_bits"] == 64, source, "word_bits must be 64")
    sizes = header["sizes"]
    _require(
        isinstance(sizes, list)
        and len(sizes) >= (2 if "layers" in header else 3)
        and len(sizes) <= MAX_LAYERS + 1
        and all(
            isinstance(s, int) and not isinstance(s, bool) and 0 < s <= MAX_UNITS for s in sizes
        ),
        source,
        f"sizes must list 3 (2 with layers) to {MAX_LAYERS + 1} integers in 1..{MAX_UNITS}, "
        f"got {sizes!r}",
    )
    out_dtype = header["output_dtype"]
    _require(out_dtype in _OUTPUT_DTYPES, source, f"output_dtype {out_dtype!r} not supported")
    table = header["arrays"]
    _require(isinstance(table, list), source, "arrays must be a list")
    arrays: dict[str, np.ndarray] = {}
    for entry in table:
        _require(
            isinstance(entry, dict)
            and {"name", "dtype", "shape", "offset", "nbytes"} <= set(entry),
            source,
            f"bad array entry {entry!r}",
        )
        name = entry["name"]
        _require(isinstance(name, str) and name not in arrays, source, f"bad array name {name!r}")
        try:
            dt = np.dtype(entry["dtype"])
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(f"{source}: array {name}: bad dtype {entry['dtype']!r}") from exc
        shape, offset, nbytes = entry["shape"], entry["offset"], entry["nbytes"]
        _require(
            isinstance(shape, list)
            and len(shape) <= 2
            and all(isinstance(s, int) and 0 <= s <= MAX_PAYLOAD_BYTES for s in shape)
            and isinstance(offset, int)
            and isinstance(nbytes, int)
            and offset >= 0,
            source,
            f"array {name}: bad shape/offset/nbytes",
        )
        _require(
            dt.kind in "iuf" and dt.str[0] in "<|",
            source,
            f"array {name}: dtype {dt.str} is not a little-endian number type",
        )
        _require(
            math.prod(shape) * dt.itemsize == nbytes,  # Python ints: no overflow
            source,
            f"array {name}: {nbytes} bytes do not match shape {shape} of {dt.str}",
        )
        _require(offset + nbytes <= len(payload), source, f"array {name} runs past the payload")
        arrays[name] = np.frombuffer(
            payload, dtype=dt, count=math.prod(shape), offset=offset
        ).reshape(shape)
    n_layers = len(sizes) - 1
    expected = {f"weights_{i}" for i in range(n_layers)}
    expected |= {f"thresholds_{i}" for i in range(n_layers - 1)} | {"output_bias"}
    _require(
        set(arrays) == expected,
        source,
        f"arrays {sorted(arrays)} differ from the expected {sorted(expected)}",
    )
    _require(
        arrays["output_bias"].dtype == np.dtype(_OUTPUT_DTYPES[out_dtype]),
        source,
        f"output_bias dtype {arrays['output_bias'].dtype} is not {out_dtype}",
    )
    classes = header["classes"]
    _require(
        isinstance(classes, list) and len(classes) >= 2,
        source,
        "classes must list at least 2 labels",
    )
    _require(
        all(isinstance(c, (int, float, str)) and not isinstance(c, bool) for c in classes),
        source,
        "class labels must be numbers or strings",
    )
    _require(len({type(c) for c in classes}) == 1, source, "class labels must share one type")
    _require(len(set(classes)) == len(classes), source, f"class labels repeat: {classes!r}")
    names, appearance, fields = read_fields(header, version, classes, source)
    return PackedModel(
        sizes=tuple(sizes),
        weights=[arrays[f"weights_{i}"].astype(np.uint64) for i in range(n_layers)],
        thresholds=[
            arrays[f"thresholds_{i}"].astype(arrays[f"thresholds_{i}"].dtype.newbyteorder("="))
            for i in range(n_layers - 1)
        ],
        output_bias=arrays["output_bias"].astype(arrays["output_bias"].dtype.newbyteorder("=")),
        classes=np.asarray(classes),
        preprocessing=header["preprocessing"],
        source=header.get("source", {}) if isinstance(header.get("source", {}), dict) else {},
        class_names=names,
        input=appearance,
        fields=fields,
        layers=header.get("layers"),
    )


def validate_model(model: PackedModel, source: str) -> None:
    """Check shapes, dtypes, padding bits, threshold ranges and preprocessing; raise
    :class:`ModelFormatError` naming the first problem."""
    sizes = model.sizes
    n_layers = len(sizes) - 1
    if model.layers is not None:
        _validate_conv(model, source)
        return
    _require(n_layers >= 2, source, "a packed model needs at least one hidden layer")
    _require(
        len(model.weights) == n_layers and len(model.thresholds) == n_layers - 1,
        source,
        "one weight array per layer and one threshold array per hidden layer expected",
    )
    for layer in range(n_layers):
        w = model.weights[layer]
        n_in, n_out = sizes[layer], sizes[layer + 1]
        _require(
            w.dtype == np.uint64 and w.shape == (n_out, n_words(n_in)),
            source,
            f"weights_{layer} has shape {w.shape} ({w.dtype}), expected "
            f"{(n_out, n_words(n_in))} uint64",
        )
        _require(padding_is_zero(w, n_in), source, f"weights_{layer} has non-zero padding bits")
    for layer, t in enumerate(model.thresholds):
        n_out = sizes[layer + 1]
        _require(
            t.shape == (n_out,) and t.dtype.newbyteorder("<").str in _THRESHOLD_DTYPES,
            source,
            f"thresholds_{layer} has shape {t.shape} ({t.dtype}), expected "
            f"({n_out},) int16/int32/int64",
        )
    _check_output(model, source)
    check_preprocessing(model.preprocessing, sizes[0], source)


def _validate_conv(model: PackedModel, source: str) -> None:
    """:func:`validate_model` for a convolutional model (``layers`` set)."""
    check_preprocessing(model.preprocessing, model.sizes[0], source)
    stages = conv.plan(model.layers, model.preprocessing["image_shape"], model.sizes[-1], source)
    problem = conv.scaling_problem(model.preprocessing["scaling"], stages)
    _require(not problem, source, problem)
    expected = conv.sizes_of(stages)
    _require(
        tuple(model.sizes) == expected,
        source,
        f"sizes {list(model.sizes)} do not match the layers (expected {list(expected)})",
    )
    conv.check_arrays(stages, model.weights, model.thresholds, source)
    _check_output(model, source)


def _check_output(model: PackedModel, source: str) -> None:
    sizes = model.sizes
    b = model.output_bias
    _require(
        b.shape == (sizes[-1],) and b.dtype.name in _OUTPUT_DTYPES,
        source,
        f"output_bias has shape {b.shape} ({b.dtype}), expected ({sizes[-1]},) float",
    )
    _require(bool(np.isfinite(b).all()), source, "output_bias contains NaN or Inf")
    n_classes = len(model.classes)
    _require(
        n_classes >= 2 and sizes[-1] == (1 if n_classes == 2 else n_classes),
        source,
        f"{sizes[-1]} output units do not fit {n_classes} classes",
    )
    check_names(model.names, n_classes, source)


def check_preprocessing(pre: Any, n_in: int, source: str) -> None:
    """Validate the ``preprocessing`` dict against the input width n_in."""
    _require(isinstance(pre, dict), source, "preprocessing must be a JSON object")
    _require(
        set(pre) == {"input", "scaling", "max_value", "image_shape"},
        source,
        f"preprocessing keys {sorted(pre)} are not input/scaling/max_value/image_shape",
    )
    _require(pre["input"] == "uint8", source, "preprocessing input must be 'uint8'")
    _require(pre["scaling"] in SCALINGS, source, f"scaling {pre['scaling']!r} not supported")
    m = pre["max_value"]
    _require(
        isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= 255,
        source,
        f"max_value must be an integer in 1..255, got {m!r}",
    )
    shape = pre["image_shape"]
    _require(
        isinstance(shape, list)
        and len(shape) in (2, 3)
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)
        and math.prod(shape) == n_in,
        source,
        f"image_shape {shape!r} does not hold the {n_in} inputs ([height, width] or "
        "[height, width, channels])",
    )
