"""The fixed C sources of the export (popcount, count-zeros, the layer kernels).

Kept apart from :mod:`.export_c`, which fills in a model's arrays and sizes around them.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BINARY_LAYER",
    "CLZ",
    "CTZ",
    "KERNELS",
    "POPCOUNT",
    "c_preamble",
    "const_array",
    "int_type",
    "pixel_order",
    "pop8_table",
    "reverse_bits",
    "target_words",
    "word_array",
]

POPCOUNT = {
    64: """\
#if defined(EBPROP_POPCOUNT_BUILTIN)
#define EBPROP_POPCOUNT(x) ((int)__builtin_popcountll(x))
#elif defined(EBPROP_POPCOUNT_TABLE)
#define EBPROP_POPCOUNT(x) ebprop_popcount(x)
static int ebprop_popcount(ebprop_word x)
{
    int c = 0;
    for (; x; x >>= 8) c += ebprop_pop8[x & 0xFFu];
    return c;
}
#else
#define EBPROP_POPCOUNT(x) ebprop_popcount(x)
static int ebprop_popcount(ebprop_word x)
{
    x = x - ((x >> 1) & UINT64_C(0x5555555555555555));
    x = (x & UINT64_C(0x3333333333333333)) + ((x >> 2) & UINT64_C(0x3333333333333333));
    x = (x + (x >> 4)) & UINT64_C(0x0F0F0F0F0F0F0F0F);
    return (int)((x * UINT64_C(0x0101010101010101)) >> 56);
}
#endif
""",
    32: """\
#if defined(EBPROP_POPCOUNT_BUILTIN)
#define EBPROP_POPCOUNT(x) ((int)__builtin_popcount(x))
#elif defined(EBPROP_POPCOUNT_TABLE)
#define EBPROP_POPCOUNT(x) ebprop_popcount(x)
static int ebprop_popcount(ebprop_word x)
{
    return ebprop_pop8[x & 0xFFu] + ebprop_pop8[(x >> 8) & 0xFFu] +
           ebprop_pop8[(x >> 16) & 0xFFu] + ebprop_pop8[x >> 24];
}
#else
#define EBPROP_POPCOUNT(x) ebprop_popcount(x)
static int ebprop_popcount(ebprop_word x)
{
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    x = (x + (x >> 4)) & 0x0F0F0F0Fu;
    return (int)((x * 0x01010101u) >> 24);
}
#endif
""",
}

CTZ = {
    64: """\
#if defined(EBPROP_CTZ_BUILTIN)
#define EBPROP_CTZ(x) __builtin_ctzll(x)
#else
#define EBPROP_CTZ(x) ebprop_ctz(x)
static int ebprop_ctz(ebprop_word x) /* x != 0 */
{
    int c = 0;
    while (!(x & 1u)) { x >>= 1; ++c; }
    return c;
}
#endif
""",
    32: """\
#if defined(EBPROP_CTZ_BUILTIN)
#define EBPROP_CTZ(x) __builtin_ctz(x)
#else
/* x != 0: isolate the lowest set bit and index a de Bruijn table (no CLZ on ARMv6-M). */
static const uint8_t ebprop_debruijn[32] = {
    0, 1, 28, 2, 29, 14, 24, 3, 30, 22, 20, 15, 25, 17, 4, 8,
    31, 27, 13, 23, 21, 19, 16, 7, 26, 12, 18, 6, 11, 5, 10, 9};
#define EBPROP_CTZ(x) ((int)ebprop_debruijn[(((x) & (0u - (x))) * 0x077CB531u) >> 27])
#endif
""",
}

BINARY_LAYER = """\
/* Hidden layer on packed ±1 inputs: unit k fires iff its mismatch count m <= max_m[k]. */
static void binary_layer(const ebprop_word *a, int words, const ebprop_word *w,
                         const EBPROP_MAXM_T *max_m, int n_out, ebprop_word *out)
{
    int k, q;
    for (q = 0; q < (n_out + EBPROP_WORD_BITS - 1) / EBPROP_WORD_BITS; ++q) out[q] = 0;
    for (k = 0; k < n_out; ++k)
        if (mismatches(a, w + k * words, words) <= max_m[k])
            out[k / EBPROP_WORD_BITS] |= EBPROP_ONE << (k % EBPROP_WORD_BITS);
}
"""

KERNELS = """\
/* Mismatches between packed ±1 vectors: popcount(a XOR w) over `words` words. */
static int mismatches(const ebprop_word *a, const ebprop_word *w, int words)
{
    int q, m = 0;
    for (q = 0; q < words; ++q) m += EBPROP_POPCOUNT(a[q] ^ w[q]);
    return m;
}

/* First layer on raw pixels: s_k = 2 P_k - S fires iff s_k >= T0[k], where S is the sum of all
   pixels and P_k the sum of those under +1 weights. Only the non-zero pixels are visited. */
static void pixel_layer(const uint8_t *p, ebprop_word *out)
{
    uint16_t active[EBPROP_WORDS_0];
    int g, i, k, n_active = 0;
    int32_t total = 0;
#if defined(EBPROP_FIRST_LAYER_PLANES)
    ebprop_word planes[8][EBPROP_WORDS_0];
    int b;
#else
    ebprop_word nz[EBPROP_WORDS_0];
#endif
    for (g = 0; g < EBPROP_WORDS_0; ++g) {
        ebprop_word m = 0;
        const uint8_t *base = p + g * EBPROP_WORD_BITS;
        int lim = EBPROP_N_0 - g * EBPROP_WORD_BITS;
        if (lim > EBPROP_WORD_BITS) lim = EBPROP_WORD_BITS;
#if defined(EBPROP_FIRST_LAYER_PLANES)
        for (b = 0; b < 8; ++b) planes[b][g] = 0;
#endif
        for (i = 0; i < lim; ++i) {
            if (base[i]) {
                m |= EBPROP_PIXEL_BIT(i);
                total += base[i];
#if defined(EBPROP_FIRST_LAYER_PLANES)
                for (b = 0; b < 8; ++b)
                    if ((base[i] >> b) & 1u) planes[b][g] |= EBPROP_PIXEL_BIT(i);
#endif
            }
        }
#if !defined(EBPROP_FIRST_LAYER_PLANES)
        nz[g] = m;
#endif
        if (m) active[n_active++] = (uint16_t)g;
    }
    for (g = 0; g < EBPROP_WORDS_1; ++g) out[g] = 0;
    for (k = 0; k < EBPROP_N_1; ++k) {
        const ebprop_word *row = W0 + k * EBPROP_WORDS_0;
        int32_t pos = 0;
#if defined(EBPROP_FIRST_LAYER_PLANES)
        for (b = 0; b < 8; ++b) {
            int32_t c = 0;
            for (i = 0; i < n_active; ++i) {
                g = active[i];
                c += EBPROP_POPCOUNT(planes[b][g] & row[g]);
            }
            pos += c << b;
        }
#else
        for (i = 0; i < n_active; ++i) {
            const uint8_t *base;
            ebprop_word m;
            g = active[i];
            m = nz[g] & row[g];
            base = p + g * EBPROP_WORD_BITS;
            while (m) {
                int j = EBPROP_NEXT_PIXEL(m);
                pos += base[j];
                EBPROP_DROP_PIXEL(m, j);
            }
        }
#endif
        if (2 * pos - total >= T0[k])
            out[k / EBPROP_WORD_BITS] |= EBPROP_ONE << (k % EBPROP_WORD_BITS);
    }
}
"""


CLZ = """\
#if defined(__GNUC__) || defined(__clang__)
#define EBPROP_CLZ(x) EBPROP_BUILTIN_CLZ(x)
#else
#define EBPROP_CLZ(x) ebprop_clz(x)
static int ebprop_clz(ebprop_word x) /* x != 0 */
{
    int c = 0;
    while (!(x >> (EBPROP_WORD_BITS - 1))) { x <<= 1; ++c; }
    return c;
}
#endif
"""


# --------------------------------------------------- text of arrays and the target's preamble
def target_words(arr: np.ndarray, n: int, word_bits: int) -> np.ndarray:
    """Rows of 64-bit words (rows, ceil(n/64)) as rows of ``word_bits`` words, padding dropped."""
    if word_bits == 64:
        return arr
    as32 = np.ascontiguousarray(arr.astype("<u8")).view("<u4").astype(np.uint64)
    return as32[:, : -(-n // 32)]


def const_array(ctype: str, name: str, values: np.ndarray, fmt, per_line: int) -> str:
    flat = [fmt(int(v)) for v in np.asarray(values).reshape(-1)]
    lines = ["    " + ", ".join(flat[s : s + per_line]) for s in range(0, len(flat), per_line)]
    return f"static const {ctype} {name}[{len(flat)}] = {{\n" + ",\n".join(lines) + "\n};\n"


def word_array(name: str, words: np.ndarray, word_bits: int) -> str:
    if word_bits == 64:
        return const_array("ebprop_word", name, words, lambda v: f"UINT64_C(0x{v:016x})", 4)
    return const_array("ebprop_word", name, words, lambda v: f"0x{v:08x}u", 6)


def int_type(values: np.ndarray) -> str:
    lo, hi = int(np.min(values)), int(np.max(values))
    return "int16_t" if -(2**15) <= lo and hi < 2**15 else "int32_t"


def pop8_table() -> str:
    values = [bin(i).count("1") for i in range(256)]
    return const_array("uint8_t", "ebprop_pop8", np.array(values), str, 16)


def pixel_order(tgt) -> str:
    """Macros placing pixel i in a first-layer word and walking the set pixels of a mask."""
    if tgt.msb_first:
        return (
            "/* Pixel i of a first-layer word is bit WORD_BITS-1-i: clz finds the next one. */\n"
            "#define EBPROP_TOP (EBPROP_ONE << (EBPROP_WORD_BITS - 1))\n"
            "#define EBPROP_PIXEL_BIT(i) (EBPROP_TOP >> (i))\n"
            f"#define EBPROP_BUILTIN_CLZ(x) __builtin_clz{'ll' if tgt.word_bits == 64 else ''}(x)\n"
            "#if defined(EBPROP_FIRST_LAYER_SUMS)\n" + CLZ + "#endif\n"
            "#define EBPROP_NEXT_PIXEL(m) EBPROP_CLZ(m)\n"
            "#define EBPROP_DROP_PIXEL(m, j) ((m) &= ~(EBPROP_TOP >> (j)))\n"
        )
    return (
        "/* Pixel i of a first-layer word is bit i: ctz finds the next one. */\n"
        "#define EBPROP_PIXEL_BIT(i) (EBPROP_ONE << (i))\n"
        "#if defined(EBPROP_FIRST_LAYER_SUMS)\n" + CTZ[tgt.word_bits] + "#endif\n"
        "#define EBPROP_NEXT_PIXEL(m) EBPROP_CTZ(m)\n"
        "#define EBPROP_DROP_PIXEL(m, j) ((m) &= (m) - 1)\n"
    )


def reverse_bits(words: np.ndarray, word_bits: int) -> np.ndarray:
    """Each word with its bit order reversed (bit i ↔ bit word_bits − 1 − i)."""
    as_bytes = np.ascontiguousarray(words.astype(f"<u{word_bits // 8}")).view(np.uint8)
    bits = np.unpackbits(as_bytes.reshape(*words.shape, word_bits // 8), axis=-1, bitorder="little")
    flipped = np.packbits(bits[..., ::-1], axis=-1, bitorder="little")
    return flipped.view(f"<u{word_bits // 8}").reshape(words.shape).astype(np.uint64)


def c_preamble(tgt, sizes: tuple[int, ...], scaling: str) -> list[str]:
    """model.c's opening comment, word type, the target's default options, popcount and ctz."""
    wb = tgt.word_bits
    word_type = "uint64_t" if wb == 64 else "uint32_t"
    c = [
        "/* Generated by ebprop (packed EBP-D network, integer arithmetic only). Do not edit.",
        f"   Target {tgt.name}; layers {'-'.join(str(s) for s in sizes)}; scaling "
        f"{scaling!r}; weights 1 bit each",
        f"   (bit 1 = +1), little-endian within {wb}-bit words, rows padded with 0 bits.",
        "   Options (-D): EBPROP_POPCOUNT_{BUILTIN,SWAR,TABLE}, EBPROP_FIRST_LAYER_{SUMS,PLANES},",
        "   EBPROP_CTZ_BUILTIN; EBPROP_PORTABLE_POPCOUNT = SWAR. */",
        '#include "model.h"',
        "",
        f"typedef {word_type} ebprop_word;",
        f"#define EBPROP_WORD_BITS {wb}",
        "#define EBPROP_ONE ((ebprop_word)1)",
        "#if defined(EBPROP_PORTABLE_POPCOUNT)",
        "#define EBPROP_POPCOUNT_SWAR",
        "#endif",
        "#if !defined(EBPROP_POPCOUNT_BUILTIN) && !defined(EBPROP_POPCOUNT_SWAR) && "
        "!defined(EBPROP_POPCOUNT_TABLE)",
    ]
    if tgt.popcount == "BUILTIN":
        c += [
            "#if defined(__GNUC__) || defined(__clang__)",
            "#define EBPROP_POPCOUNT_BUILTIN",
            "#else",
            "#define EBPROP_POPCOUNT_SWAR",
            "#endif",
        ]
    else:
        c.append(f"#define EBPROP_POPCOUNT_{tgt.popcount}")
    c += [
        "#endif",
        "#if !defined(EBPROP_FIRST_LAYER_SUMS) && !defined(EBPROP_FIRST_LAYER_PLANES)",
        f"#define EBPROP_FIRST_LAYER_{tgt.first_layer}",
        "#endif",
    ]
    if tgt.ctz == "BUILTIN":
        c += [
            "#if !defined(EBPROP_CTZ_BUILTIN) && (defined(__GNUC__) || defined(__clang__))",
            "#define EBPROP_CTZ_BUILTIN",
            "#endif",
        ]
    c += ["", "#if defined(EBPROP_POPCOUNT_TABLE)", pop8_table() + "#endif", ""]
    c += [POPCOUNT[wb], pixel_order(tgt)]
    return c
