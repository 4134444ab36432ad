"""C99 export of a binary CNN: ``model.c`` for the packed EBP-D network of a conv model.

The same contract as the MLP export (:mod:`.export_c`): integer arithmetic only, ``<stdint.h>``
only, no allocation, weights and thresholds ``static const`` (flash), and the entry point
``int ebprop_predict(const uint8_t *pixels)`` on the raw pixels, row-major (height, width,
channels) as the dataset stores them. What it computes is exactly :class:`~ebprop.packed.
PackedNetwork`'s (:mod:`.conv`):

* the first conv on raw pixels: for each output position the k×k×C window is gathered (padded
  taps are 0, a black pixel), and s = 2·P − S with S the window's pixel sum and P the sum of the
  pixels under +1 weights, visiting only the non-zero pixels; fires iff s ≥ T;
* a conv on ±1 units: m = Σ over the valid taps of popcount(a XOR w) on each pixel's channel
  words, n = (valid taps)·C_in; fires iff n − 2m ≥ T;
* a max-pool after a conv is fused into it: a pooled unit is +1 as soon as one conv output in
  its window fires (the others are not computed), so the pre-pool map is never stored;
  a max-pool after a pool ORs the bits;
* a conv/pool output feeding a conv keeps each pixel's channels in whole words; one feeding a
  dense layer is written flat in (y, x, c) order, the dense layer's input layout;
* dense layers and the output keys as in the MLP export.

RAM: two activation buffers used in turn (ping-pong), each sized to the largest output written
into it, plus one window (first layer) or tap list (other convs) on the stack.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import ModelFormatError
from . import conv, pack
from .c_source import BINARY_LAYER, c_preamble, const_array, reverse_bits, target_words, word_array
from .fileformat import PackedModel

GEOMETRY = ("h", "w", "words_in", "c_in", "c_out", "k", "stride", "pad", "pool", "oh", "ow")

CONV_KERNELS = """\
/* Geometry of a conv (with its fused max-pool) or pool stage; see the generator's docstring. */
typedef struct {
    int32_t h, w, words_in, c_in, c_out, k, stride, pad, pool, oh, ow, out_pixel_bits, out_words;
} ebprop_conv;

#define EBPROP_TEST_BIT(a, i) (((a)[(i) / EBPROP_WORD_BITS] >> ((i) % EBPROP_WORD_BITS)) & 1u)
#define EBPROP_SET_BIT(a, i) \
    ((a)[(i) / EBPROP_WORD_BITS] |= EBPROP_ONE << ((i) % EBPROP_WORD_BITS))

static void clear_words(ebprop_word *a, int32_t words)
{
    while (words-- > 0) *a++ = 0;
}

/* Mismatches between packed ±1 vectors: popcount(a XOR w) over `words` words. */
static int mismatches(const ebprop_word *a, const ebprop_word *w, int words)
{
    int q, m = 0;
    for (q = 0; q < words; ++q) m += EBPROP_POPCOUNT(a[q] ^ w[q]);
    return m;
}

/* First conv on raw pixels (h, w, c_in), with a fused pool x pool max-pool: output unit co of a
   window position fires iff 2 P - S >= t[co] (S: the window's pixel sum, P: the sum under +1
   weights; padded taps are 0). Weight rows are (ky, kx, c) bits, EBPROP_WIN0_WORDS words each. */
static void pixel_conv(const ebprop_conv *g, const uint8_t *p, const ebprop_word *wt,
                       const int32_t *t, ebprop_word *out)
{
    uint8_t win[EBPROP_WIN0_WORDS * EBPROP_WORD_BITS];
    ebprop_word nz[EBPROP_WIN0_WORDS];
    int py, px, dy, dx, ky, kx, c, co, q;
    clear_words(out, g->out_words);
    for (py = 0; py < g->oh; ++py)
        for (px = 0; px < g->ow; ++px) {
            uint32_t bit0 = (uint32_t)((py * g->ow + px) * g->out_pixel_bits);
            for (dy = 0; dy < g->pool; ++dy)
                for (dx = 0; dx < g->pool; ++dx) {
                    int y0 = (py * g->pool + dy) * g->stride - g->pad;
                    int x0 = (px * g->pool + dx) * g->stride - g->pad;
                    int32_t total = 0;
                    uint32_t j = 0;
                    for (q = 0; q < EBPROP_WIN0_WORDS; ++q) nz[q] = 0;
                    for (ky = 0; ky < g->k; ++ky)
                        for (kx = 0; kx < g->k; ++kx) {
                            int y = y0 + ky, x = x0 + kx;
                            int inside = y >= 0 && y < g->h && x >= 0 && x < g->w;
                            for (c = 0; c < g->c_in; ++c, ++j) {
                                uint8_t v = inside ? p[(y * g->w + x) * g->c_in + c] : 0;
                                win[j] = v;
                                if (v) {
                                    total += v;
                                    nz[j / EBPROP_WORD_BITS] |=
                                        EBPROP_PIXEL_BIT(j % EBPROP_WORD_BITS);
                                }
                            }
                        }
                    for (co = 0; co < g->c_out; ++co) {
                        uint32_t bit = bit0 + (uint32_t)co;
                        const ebprop_word *row = wt + co * EBPROP_WIN0_WORDS;
                        int32_t pos = 0;
                        if (EBPROP_TEST_BIT(out, bit)) continue; /* pooled unit already +1 */
                        for (q = 0; q < EBPROP_WIN0_WORDS; ++q) {
                            ebprop_word m = nz[q] & row[q];
                            const uint8_t *base = win + q * EBPROP_WORD_BITS;
                            while (m) {
                                int i = EBPROP_NEXT_PIXEL(m);
                                pos += base[i];
                                EBPROP_DROP_PIXEL(m, i);
                            }
                        }
                        if (2 * pos - total >= t[co]) EBPROP_SET_BIT(out, bit);
                    }
                }
        }
}

#if EBPROP_HIDDEN_CONVS
/* Conv on packed ±1 units (h, w, words_in words per pixel), with a fused max-pool: over the
   valid taps, m mismatches and n = taps * c_in; unit co fires iff n - 2 m >= t[co]. Weight rows
   are k * k taps of words_in words; the valid taps of a kernel row are contiguous words in the
   input and in the weights. */
static void conv_layer(const ebprop_conv *g, const ebprop_word *in, const ebprop_word *wt,
                       const int32_t *t, ebprop_word *out)
{
    int py, px, dy, dx, ky, co;
    clear_words(out, g->out_words);
    for (py = 0; py < g->oh; ++py)
        for (px = 0; px < g->ow; ++px) {
            uint32_t bit0 = (uint32_t)((py * g->ow + px) * g->out_pixel_bits);
            for (dy = 0; dy < g->pool; ++dy)
                for (dx = 0; dx < g->pool; ++dx) {
                    int y0 = (py * g->pool + dy) * g->stride - g->pad;
                    int x0 = (px * g->pool + dx) * g->stride - g->pad;
                    int ky0 = y0 < 0 ? -y0 : 0, ky1 = g->h - y0 < g->k ? g->h - y0 : g->k;
                    int kx0 = x0 < 0 ? -x0 : 0, kx1 = g->w - x0 < g->k ? g->w - x0 : g->k;
                    int run = (kx1 - kx0) * g->words_in, n;
                    if (ky1 < ky0) ky1 = ky0; /* a window wholly in the padding */
                    if (run < 0) run = 0;
                    n = (ky1 - ky0) * (run / g->words_in) * g->c_in;
                    for (co = 0; co < g->c_out; ++co) {
                        uint32_t bit = bit0 + (uint32_t)co;
                        const ebprop_word *row = wt + co * g->k * g->k * g->words_in;
                        int m = 0;
                        if (EBPROP_TEST_BIT(out, bit)) continue; /* pooled unit already +1 */
                        for (ky = ky0; ky < ky1; ++ky)
                            m += mismatches(in + ((y0 + ky) * g->w + x0 + kx0) * g->words_in,
                                            row + (ky * g->k + kx0) * g->words_in, run);
                        if (n - 2 * m >= t[co]) EBPROP_SET_BIT(out, bit);
                    }
                }
        }
}
#endif

#if EBPROP_POOLS
/* pool x pool max-pool of packed ±1 units (an OR of bits). */
static void pool_layer(const ebprop_conv *g, const ebprop_word *in, ebprop_word *out)
{
    int py, px, dy, dx, c;
    clear_words(out, g->out_words);
    for (py = 0; py < g->oh; ++py)
        for (px = 0; px < g->ow; ++px)
            for (c = 0; c < g->c_out; ++c) {
                uint32_t bit = (uint32_t)((py * g->ow + px) * g->out_pixel_bits + c);
                for (dy = 0; dy < g->pool; ++dy)
                    for (dx = 0; dx < g->pool; ++dx) {
                        int32_t pixel = (py * g->pool + dy) * g->w + px * g->pool + dx;
                        uint32_t src = (uint32_t)(pixel * g->words_in * EBPROP_WORD_BITS + c);
                        if (EBPROP_TEST_BIT(in, src)) EBPROP_SET_BIT(out, bit);
                    }
            }
}
#endif
"""


def _emitters(stages: list[conv.Stage]) -> list[dict]:
    """The stages before the output layer that write an activation buffer, a conv's following
    max-pool fused into it."""
    out: list[dict] = []
    i = 0
    while i < len(stages) - 1:
        st = stages[i]
        if st.kind == "conv" and stages[i + 1].kind == "maxpool":
            out.append({"stage": st, "pool": stages[i + 1].kernel, "out": stages[i + 1].out_shape})
            i += 2
        else:
            pool = st.kernel if st.kind == "maxpool" else 1
            out.append({"stage": st, "pool": pool, "out": st.out_shape})
            i += 1
    return out


def _conv_weights(model: PackedModel, st: conv.Stage, wb: int, msb_first: bool) -> np.ndarray:
    """A conv's weights as the C code reads them (see CONV_KERNELS)."""
    bits = pack.unpack_bits(model.weights[st.param], st.n_rows)  # (C_out, k·k·C_in)
    if st.param == 0:
        words = target_words(pack.pack_bits(bits), st.n_rows, wb)
        return reverse_bits(words, wb) if msb_first else words
    c_in = st.in_shape[2]
    taps = bits.reshape(-1, c_in)  # (C_out·k·k, C_in)
    words = target_words(pack.pack_bits(taps), c_in, wb)
    return words.reshape(st.n_out, -1)


def conv_model_c(
    model: PackedModel,
    tgt,
    labels: str,
    fold_arrays: list[str],
    output_lines: list[str],
    keyed: bool,
) -> list[str]:
    """The lines of ``model.c`` for a validated conv model (``model.layers`` set).

    ``labels``, ``fold_arrays`` and ``output_lines`` come from :mod:`.export_c` (the class
    labels, the output keys and the output loop reading ``act``, ``WOUT``, ``EBPROP_WORDS_OUT``
    and ``EBPROP_N_OUT``); ``keyed`` says whether that loop uses ``key``/``best``.
    """
    wb = tgt.word_bits
    prep = model.preprocessing
    stages = conv.plan(model.layers, prep["image_shape"], model.sizes[-1])
    emitters = _emitters(stages)
    too_big = [s for s in stages if s.param >= 0 and s.n_rows * prep["max_value"] >= 2**30]
    if too_big or model.sizes[0] > 2**24:
        raise ModelFormatError(
            "the model is too large for the C export's 32-bit sums (at most 2^24 inputs and "
            "2^30 / max_value weights per unit)"
        )
    c = c_preamble(tgt, model.sizes, prep["scaling"])
    first = stages[0]
    hidden_convs = [s for s in stages if s.kind == "conv" and s.param > 0]
    c += [
        f"/* Convolutional network {conv.layers_text(model)} on "
        f"{'x'.join(map(str, prep['image_shape']))} images. */",
        "#if defined(EBPROP_FIRST_LAYER_PLANES)",
        '#error "EBPROP_FIRST_LAYER_PLANES: a convolutional model\'s first layer uses SUMS only"',
        "#endif",
        f"#define EBPROP_WIN0_WORDS {-(-first.n_rows // wb)}",
        f"#define EBPROP_HIDDEN_CONVS {int(bool(hidden_convs))}",
        f"#define EBPROP_POOLS {int(any(e['stage'].kind == 'maxpool' for e in emitters))}",
        "#define EBPROP_MAXM_T int32_t",
        "",
        labels,
        CONV_KERNELS,
    ]
    dense_hidden = [e for e in emitters if e["stage"].kind == "dense"]
    if dense_hidden:
        c.append(BINARY_LAYER)
    calls, buf_words = [], [0, 0]
    for i, e in enumerate(emitters):
        st, src, dst = e["stage"], f"buf{(i - 1) % 2}", f"buf{i % 2}"
        nxt = emitters[i + 1]["stage"] if i + 1 < len(emitters) else stages[-1]
        ho, wo, ch = e["out"]
        if st.kind == "dense":
            out_words = -(-st.n_out // wb)
            words_in = -(-st.n_rows // wb)
            mm = [pack.max_mismatches(t, st.n_rows) for t in model.thresholds[st.param]]
            c.append(
                word_array(f"W{st.param}", target_words(model.weights[st.param], st.n_rows, wb), wb)
            )
            c.append(const_array("int32_t", f"MAXM{st.param}", np.array(mm), str, 12))
            calls.append(
                f"    binary_layer({src}, {words_in}, W{st.param}, MAXM{st.param}, {st.n_out}, "
                f"{dst});"
            )
        else:
            flat = nxt.kind == "dense"
            pixel_bits = ch if flat else -(-ch // wb) * wb
            out_words = -(-(ho * wo * pixel_bits) // wb)
            h, w, c_in = st.in_shape
            geometry = {
                "h": h,
                "w": w,
                "words_in": -(-c_in // wb),
                "c_in": c_in,
                "c_out": ch,
                "k": st.kernel,
                "stride": st.stride,
                "pad": st.pad,
                "pool": e["pool"],
                "oh": ho,
                "ow": wo,
            }
            values = [geometry[k] for k in GEOMETRY] + [pixel_bits, out_words]
            layout = "flat (y, x, c)" if flat else "channel words per pixel"
            c.append(
                f"/* stage {i}: {st.kind} {st.in_shape} -> {e['out']}, output {layout} */\n"
                f"static const ebprop_conv G{i} = {{{', '.join(map(str, values))}}};"
            )
            if st.kind == "conv":
                weights = _conv_weights(model, st, wb, tgt.msb_first)
                c.append(word_array(f"W{st.param}", weights, wb))
                t = model.thresholds[st.param]
                c.append(const_array("int32_t", f"T{st.param}", t, str, 12))
                kernel = "pixel_conv" if st.param == 0 else "conv_layer"
                source = "pixels" if st.param == 0 else src
                calls.append(f"    {kernel}(&G{i}, {source}, W{st.param}, T{st.param}, {dst});")
            else:
                calls.append(f"    pool_layer(&G{i}, {src}, {dst});")
        buf_words[i % 2] = max(buf_words[i % 2], out_words)
    out = stages[-1]
    c.append(word_array("WOUT", target_words(model.weights[out.param], out.n_rows, wb), wb))
    c += [
        f"#define EBPROP_N_OUT {out.n_out}",
        f"#define EBPROP_WORDS_OUT {-(-out.n_rows // wb)}",
        *fold_arrays,
        "",
        "int ebprop_predict(const uint8_t *pixels)",
        "{",
        f"    ebprop_word buf0[{buf_words[0]}];",
    ]
    if buf_words[1]:
        c.append(f"    ebprop_word buf1[{buf_words[1]}];")
    c += [
        f"    const ebprop_word *act = buf{(len(emitters) - 1) % 2};",
        "    int k, m, arg = 0;",
    ]
    if keyed:
        c.append("    int32_t key, best = 0;")
    c += calls + output_lines + ["    return arg;", "}", ""]
    return c
