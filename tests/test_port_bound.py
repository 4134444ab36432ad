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


@pytest.mark.skipif(VECTOR_BYTES != 64, reason="the count is of the AVX-512 build")
def test_clip_and_tanh_count_is_that_of_the_rational_tanh():
    # clip (max, min) + tanh (|x|, clamp, x², 6 + 3 Horner steps, a·P, the divide, the final
    # clamp, the sign put back: xor, compare, blend) = 20 per vector of weights
    assert port_bound.tanh_ops_per_vector() == 20


def test_binary_vector_ops_count_the_floors_products_and_one_tanh_per_weight():
    # 784-800-800-10, batch 10, 16 lanes: forward ⟨v⟩M and ⟨v²⟩M², the update, and (layers ≥ 2)
    # the backward product: 3 or 4 multiply-adds per weight and sample; 20 + 1 per weight vector
    fmas, other = port_bound.binary_vector_ops((784, 800, 800, 10), 10, 16, 20)
    assert fmas == pytest.approx(10 * (784 * 800 * 3 + 800 * 800 * 4 + 800 * 10 * 4) / 16)
    assert other == pytest.approx((784 * 800 + 800 * 800 + 800 * 10) / 16 * 21)
