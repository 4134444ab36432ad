"""The vector-operation count behind docs/performance.md's bound for binary weights (issue 13).

benchmarks/port_bound.py reads numba's assembly of the clip-and-tanh loop and counts its vector
arithmetic per vector of weights; these tests pin what it counts and what it leaves out.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import port_bound  # noqa: E402

from ebprop.kernels._simd import VECTOR_BYTES  # noqa: E402

_ASM = """\
f:
\tmovq\t%rdi, %rax
.LBB0_1:
\tvmovups\t(%rbx,%rsi,4), %zmm16
\tvbroadcastss\t(%rax), %zmm11
\tvmaxps\t(%rbx,%rsi,4), %zmm1, %zmm16
\tvmovaps\t%zmm5, %zmm19
\tvfmadd213ps\t%zmm4, %zmm18, %zmm19
\tvdivps\t%zmm20, %zmm17, %zmm17
\tvcmpleps\t%zmm16, %zmm15, %k1
\tvmovaps\t%zmm17, %zmm18 {%k1}
\tvmovups\t%zmm18, (%r13,%rsi,4)
.LBB0_2:
\taddq\t$16, %rsi
\tcmpq\t%rsi, %rdx
\tjne\t.LBB0_1
\tjmp\t.LBB0_9
.LBB0_3:
\tvaddps\t%zmm1, %zmm2, %zmm3
\tjb\t.LBB0_3
"""


def test_loop_bodies_run_from_each_label_to_its_jump_back():
    bodies = port_bound.loop_bodies(_ASM)
    assert len(bodies) == 2  # .LBB0_1 (through .LBB0_2) and .LBB0_3; .LBB0_2 never jumps back
    assert bodies[0][0].startswith("vmovups") and bodies[0][-1] == "jne\t.LBB0_1"
    assert bodies[1] == ["vaddps\t%zmm1, %zmm2, %zmm3", "jb\t.LBB0_3"]


def test_vector_ops_count_arithmetic_and_blends_not_moves():
    body = port_bound.loop_bodies(_ASM)[0]
    # vmaxps (with its load folded in), vfmadd213ps, vdivps, vcmpleps and the masked vmovaps;
    # not the plain load, the broadcast, the register move, the store or the scalar loop control
    assert port_bound.vector_ops(body) == (5, 1)
    assert port_bound.vector_ops(["vaddps\t%zmm1, %zmm2, %zmm3", "jb\t.LBB0_3"]) == (1, 0)


def test_clip_and_tanh_loop_is_vectorised_and_costs_what_the_rational_tanh_needs():
    # The rational tanh as written: clip (max, min) + tanh (|x|, clamp, x², 6 + 3 Horner steps,
    # a·P, the divide, the final clamp, the sign put back: xor, compare, blend) = 20 vector
    # operations per vector of weights with this repository's llvmlite on an AVX-512 core. Another
    # CPU or LLVM may fold or split a clamp or a blend differently, so the count is held to what
    # the arithmetic cannot do without — the clip's max and min, |x|, x², nine Horner steps, a·P,
    # the divide and the sign (16) — and to at most a quarter above the 20 the docs give.
    asm = port_bound.clip_tanh_asm()
    ops = port_bound.tanh_ops_per_vector(asm)
    assert 16 <= ops <= 25, ops
    # ... on whole vectors of the width the kernels are built for, not a scalar loop
    register = {64: "%zmm", 32: "%ymm"}[VECTOR_BYTES]
    divides = [ln for b in port_bound.loop_bodies(asm) for ln in b if ln.startswith("vdivps")]
    assert divides and all(register in ln for ln in divides), divides


def test_binary_vector_ops_count_the_floors_products_and_one_tanh_per_weight():
    # 784-800-800-10, batch 10, 16 lanes: forward ⟨v⟩M and ⟨v²⟩M², the update, and (layers ≥ 2)
    # the backward product: 3 or 4 multiply-adds per weight and sample; 20 + 1 per weight vector
    fmas, other = port_bound.binary_vector_ops((784, 800, 800, 10), 10, 16, 20)
    assert fmas == pytest.approx(10 * (784 * 800 * 3 + 800 * 800 * 4 + 800 * 10 * 4) / 16)
    assert other == pytest.approx((784 * 800 + 800 * 800 + 800 * 10) / 16 * 21)
