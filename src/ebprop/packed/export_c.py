"""C99 export: ``model.h`` + ``model.c``, integer arithmetic only, for a host or a Cortex-M core.

The generated code is self-contained (``<stdint.h>`` only), allocates nothing (activations are
fixed-size local arrays of bits), keeps every weight and threshold ``static const`` (flash on a
microcontroller), and computes exactly what :class:`~ebprop.packed.PackedNetwork` computes:

* first layer on raw pixels p: s_k = 2·P_k − S with P_k the sum of the pixels under +1 weights
  and S the sum of all pixels, over the non-zero pixels only (``EBPROP_FIRST_LAYER_SUMS``), or by
  bit planes s_k = 2·Σ_b 2^b·popcount(plane_b AND w_k) − S (``EBPROP_FIRST_LAYER_PLANES``);
  unit k fires iff s_k ≥ T_k;
* hidden layers: m = popcount(a XOR w_k) mismatches; unit fires iff m ≤ floor((n − T_k)/2);
* output layer: the real biases folded into integer keys (:func:`ebprop.packed.pack.
  fold_output_bias`), proven at export to order every reachable output exactly as the float
  path's fl(n − 2m + b_k) does, so the first maximum of the keys is the float argmax.

Targets: ``host`` (64-bit words, ``__builtin_popcountll`` under GCC/Clang), ``cortex-m4`` and
``cortex-m0plus`` (32-bit words: no 64-bit helper calls; these cores have no popcount
instruction, so a SWAR or 256-byte-table popcount, chosen by measured instruction counts).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..exceptions import ModelFormatError
from ..fileio import atomic_write_text
from . import pack
from .c_source import (
    BINARY_LAYER,
    KERNELS,
    c_preamble,
    const_array,
    int_type,
    reverse_bits,
    target_words,
    word_array,
)
from .export_conv_c import conv_model_c
from .fileformat import PackedModel, validate_model


@dataclass(frozen=True)
class CTarget:
    """What the generated C assumes about the core (defaults; each can be overridden by -D)."""

    name: str
    word_bits: int
    popcount: str  # BUILTIN | SWAR | TABLE
    first_layer: str  # SUMS | PLANES
    ctz: str  # BUILTIN | DEBRUIJN (count trailing zeros; ARMv6-M has no CLZ/RBIT)
    # First-layer words hold pixel i at bit W−1−i, so count-leading-zeros (one instruction on
    # the M4, against rbit + clz for trailing zeros) finds the next pixel.
    msb_first: bool = False


# Defaults measured under QEMU (docs/deploy.md, "Microcontrollers"; benchmarks/bench_cortex.py).
TARGETS = {
    "host": CTarget("host", 64, "BUILTIN", "SUMS", "BUILTIN"),
    "cortex-m4": CTarget("cortex-m4", 32, "SWAR", "SUMS", "BUILTIN", msb_first=True),
    "cortex-m0plus": CTarget("cortex-m0plus", 32, "TABLE", "SUMS", "DEBRUIJN"),
}


def c_string_literal(label: object) -> str:
    """A C string literal whose bytes are the UTF-8 encoding of ``str(label)``.

    Printable ASCII is kept except ``\\``, ``"`` and ``?`` (escaped, so no trigraph such as
    ``??=`` can form under ``-std=c99``); every other byte becomes a 3-digit octal escape, which
    (unlike a greedy hex escape) never absorbs the characters that follow it.

    Raises
    ------
    ModelFormatError
        When the label contains a NUL character, which a C string cannot hold.
    """
    text = str(label)
    if "\0" in text:
        raise ModelFormatError(
            f"class label {text!r} contains a NUL character, which a C string cannot hold; "
            "relabel the classes"
        )
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in '\\"?':
            out.append("\\" + ch)
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _output_lines(fold: pack.OutputFold, n_in: int, act: str, w: str, words: str, n_out: str):
    """The output layer: mismatches of every class row, then the first maximum of the keys."""
    body = [
        f"    for (k = 0; k < {n_out}; ++k) {{",
        f"        m = mismatches({act}, {w} + k * {words}, {words});",
    ]
    if fold.kind == "threshold":
        return body + [f"        arg = m <= {int(fold.base[0])} ? 1 : 0;", "    }"]
    key = (
        "OUT_BASE[k] - EBPROP_OUT_STEP * m"
        if fold.kind == "linear"
        else f"OUT_RANK[k * {n_in + 1} + m]"
    )
    return body + [
        f"        key = {key};",
        "        if (k == 0 || key > best) { best = key; arg = k; }",
        "    }",
    ]


def _fold_arrays(fold: pack.OutputFold) -> list[str]:
    """The output keys' constants (see :class:`ebprop.packed.pack.OutputFold`)."""
    if fold.kind == "linear":
        return [
            "/* Output keys base[k] - step*m: the biases folded into integers, scale "
            f"{fold.step // 2}; proven at export to order all outputs as the float path. */",
            const_array("int32_t", "OUT_BASE", fold.base, str, 6),
            f"#define EBPROP_OUT_STEP {fold.step}",
        ]
    if fold.kind == "table":
        return [
            "/* Output keys: rank of fl(n - 2m + b_k) among all outputs, [k][m]. */",
            const_array(int_type(fold.table), "OUT_RANK", fold.table, str, 16),
        ]
    return []


def _predict_function(sizes: tuple[int, ...], fold: pack.OutputFold) -> list[str]:
    """ebprop_predict: the layers in turn, then the first maximum of the integer output keys."""
    n_layers = len(sizes) - 1
    last = n_layers - 1
    body = ["int ebprop_predict(const uint8_t *pixels)", "{"]
    for layer in range(1, n_layers):
        body.append(f"    ebprop_word a{layer}[EBPROP_WORDS_{layer}];")
    body += ["    int k, m, arg = 0;"]
    if fold.kind != "threshold":
        body += ["    int32_t key, best = 0;"]
    body += ["    pixel_layer(pixels, a1);"]
    for layer in range(1, last):
        body.append(
            f"    binary_layer(a{layer}, EBPROP_WORDS_{layer}, W{layer}, MAXM{layer}, "
            f"EBPROP_N_{layer + 1}, a{layer + 1});"
        )
    body += _output_lines(
        fold, sizes[-2], f"a{last}", f"W{last}", f"EBPROP_WORDS_{last}", f"EBPROP_N_{n_layers}"
    )
    body += ["    return arg;", "}", ""]
    return body


def _header(model: PackedModel) -> list[str]:
    """model.h: sizes, the class labels and the entry point."""
    shape = model.preprocessing["image_shape"]
    is_conv = model.layers is not None
    lines = [
        "/* Generated by ebprop (packed EBP-D network, integer arithmetic only). Do not edit. */",
        "#ifndef EBPROP_MODEL_H",
        "#define EBPROP_MODEL_H",
        "",
        "#include <stdint.h>",
        "",
        f"#define EBPROP_N_INPUTS {model.sizes[0]}",
        f"#define EBPROP_IMAGE_HEIGHT {shape[0]}",
        f"#define EBPROP_IMAGE_WIDTH {shape[1]}",
    ]
    if is_conv:
        lines.append(f"#define EBPROP_IMAGE_CHANNELS {shape[2] if len(shape) == 3 else 1}")
    appearance = []
    if model.input is not None:
        dark = int(model.input["polarity"] == "dark_on_light")
        appearance = [
            f"/* Training images were {model.input['polarity'].replace('_', ' ')} ("
            + ("RGB, row-major (y, x, channel)" if model.input["colour"] == "rgb" else "greyscale")
            + ", alpha composited on the background); give pixels the same way. */",
            f"#define EBPROP_INPUT_DARK_ON_LIGHT {dark}",
        ]
    return lines + [
        f"#define EBPROP_MAX_VALUE {model.preprocessing['max_value']}",
        f"#define EBPROP_N_CLASSES {len(model.classes)}",
        *appearance,
        "",
        "/* Names of the classes, indexed by the value ebprop_predict returns. */",
        "extern const char *const ebprop_labels[EBPROP_N_CLASSES];",
        "#define ebprop_class_labels ebprop_labels /* its name in exports before model format 2 */",
        "",
        "/* Class index (0 .. EBPROP_N_CLASSES-1) of one image: EBPROP_N_INPUTS raw pixels,",
        "   row-major" + (" (height, width, channels)" if is_conv else "") + ", values 0 .. "
        "EBPROP_MAX_VALUE. Reentrant; allocates nothing. */",
        "int ebprop_predict(const uint8_t *pixels);",
        "",
        "#endif /* EBPROP_MODEL_H */",
        "",
    ]


def generate_c(model: PackedModel, target: str = "host") -> tuple[str, str]:
    """The texts of ``model.h`` and ``model.c`` for a validated packed model.

    Parameters
    ----------
    model : PackedModel
    target : {"host", "cortex-m4", "cortex-m0plus"}
        Word size and the default popcount / first-layer / count-trailing-zeros choices.

    Raises
    ------
    ModelFormatError
        When a sum could overflow 32-bit integers, or a class label cannot be a C string.
    """
    if target not in TARGETS:
        raise ModelFormatError(f"target must be one of {sorted(TARGETS)}, got {target!r}")
    tgt = TARGETS[target]
    validate_model(model, "<model>")
    sizes = model.sizes
    prep = model.preprocessing
    n_layers = len(sizes) - 1
    wb = tgt.word_bits
    labels = ", ".join(c_string_literal(x) for x in model.names)
    labels = f"const char *const ebprop_labels[EBPROP_N_CLASSES] = {{{labels}}};\n"
    fold = pack.fold_output_bias(model.output_bias, sizes[-2])
    header = _header(model)
    if model.layers is not None:
        body = conv_model_c(
            model,
            tgt,
            labels,
            _fold_arrays(fold),
            _output_lines(fold, sizes[-2], "act", "WOUT", "EBPROP_WORDS_OUT", "EBPROP_N_OUT"),
            fold.kind != "threshold",
        )
        return "\n".join(header), "\n".join(body)
    if sizes[0] > 2**20 or max(sizes[1:]) > 2**15:  # int32 pixel sums, int16 counts
        raise ModelFormatError(
            "the model is too wide for the C export (at most 2^20 inputs and 32768 units per "
            "hidden or output layer)"
        )
    c = c_preamble(tgt, sizes, prep["scaling"])
    for layer in range(n_layers + 1):
        c.append(f"#define EBPROP_N_{layer} {sizes[layer]}")
        c.append(f"#define EBPROP_WORDS_{layer} {-(-sizes[layer] // wb)}")
    c.append("")
    c.append(labels)
    for layer in range(n_layers):
        words = target_words(model.weights[layer], sizes[layer], wb)
        if layer == 0 and tgt.msb_first:
            words = reverse_bits(words, wb)
        c.append(word_array(f"W{layer}", words, wb))
    t0 = model.thresholds[0]
    c.append(const_array(int_type(t0), "T0", t0, str, 12))
    # hidden layers ≥ 1 as maximal mismatch counts, one type for all (a single kernel)
    max_m = [
        np.array([pack.max_mismatches(t, sizes[layer + 1]) for t in model.thresholds[layer + 1]])
        for layer in range(n_layers - 2)
    ]
    maxm_type = int_type(np.concatenate(max_m)) if max_m else "int16_t"
    c.append(f"#define EBPROP_MAXM_T {maxm_type}")
    for layer, mm in enumerate(max_m, start=1):
        c.append(const_array("EBPROP_MAXM_T", f"MAXM{layer}", mm, str, 12))
    c += _fold_arrays(fold)
    c.append(KERNELS)
    if n_layers > 2:  # a second hidden layer (else the helper would be unused)
        c.append(BINARY_LAYER)
    c += _predict_function(sizes, fold)
    return "\n".join(header), "\n".join(c)


def write_c_model(
    model: PackedModel, directory: str | os.PathLike, target: str = "host"
) -> tuple[Path, Path]:
    """Write ``model.h`` and ``model.c`` into ``directory`` (created if missing), atomically."""
    h_text, c_text = generate_c(model, target)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    h_path, c_path = directory / "model.h", directory / "model.c"
    atomic_write_text(h_path, h_text)
    atomic_write_text(c_path, c_text)
    return h_path, c_path


#: QEMU board and compiler flags per Cortex-M target. QEMU has no Cortex-M0+ board; the
#: micro:bit's Cortex-M0 runs the same ARMv6-M instruction set.
BOARDS = {
    "cortex-m4": ("mps2-an386", "-mcpu=cortex-m4"),
    "cortex-m0plus": ("microbit", "-mcpu=cortex-m0plus"),
}
#: The files a Cortex-M project holds besides model.h and model.c.
BOARD_FILES = ("startup.c", "semihost.h", "harness.c", "cortex_m.ld", "Makefile")


def write_c_project(model: PackedModel, directory: str | os.PathLike, target: str) -> list[Path]:
    """A ready-to-build folder for a Cortex-M ``target``: the model sources, a startup file,
    linker script, semihosting harness and Makefile (``make run`` boots it in QEMU).

    Returns the paths written.
    """
    from importlib.resources import files

    if target not in BOARDS:
        raise ModelFormatError(f"target must be one of {sorted(BOARDS)}, got {target!r}")
    machine, cpuflags = BOARDS[target]
    written = list(write_c_model(model, directory, target))
    templates = files("ebprop.packed") / "cortex_m"
    for name in BOARD_FILES:
        text = (templates / name).read_text(encoding="utf-8")
        text = text.replace("@TARGET@", target).replace("@MACHINE@", machine)
        text = text.replace("@CPUFLAGS@", cpuflags)
        path = Path(directory) / name
        atomic_write_text(path, text)
        written.append(path)
    return written
