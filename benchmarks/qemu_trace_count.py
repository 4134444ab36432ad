"""Count the instructions QEMU executed in an address range, from its translation/exec log.

An independent check of the SysTick counts of benchmarks/bench_cortex.py (docs/deploy.md,
"Microcontrollers"). In a project written by ``ebprop export --target cortex-m4``::

    make model.elf
    arm-none-eabi-nm -S model.elf | grep ebprop_predict      # e.g. 00000040 0000023c
    qemu-system-arm -M mps2-an386 -nographic -monitor none -serial none -icount shift=0 \\
        -semihosting-config enable=on,target=native,arg=model.elf,arg=one.bin,arg=out.txt \\
        -kernel model.elf -d in_asm,exec,nochain -dfilter 0x40+0x23c -D qemu.log
    python benchmarks/qemu_trace_count.py qemu.log 0x40 0x27c

Each translation ("IN:" and its instructions) is followed by the first execution of that block,
whose "Trace" line names the host pointer of the block; later executions are counted by that
pointer, not by guest address, because QEMU's icount mode also translates shortened copies of a
block at the same address. A block logged but cut short by the icount budget counts in full,
so the result can exceed the truth by a few blocks' worth.
"""

from __future__ import annotations

import argparse
import re

_INSN = re.compile(r"^0x[0-9a-f]+:\s")
_EXEC = re.compile(r"Trace \d+: (0x[0-9a-f]+) \[[0-9a-f]+/([0-9a-f]+)/")


def executed_instructions(log: str, lo: int, hi: int) -> int:
    """Guest instructions executed in blocks starting in [lo, hi), from the log's text."""
    sizes: dict[str, int] = {}
    pending: int | None = None
    total = 0
    for line in log.splitlines():
        if line.startswith("IN:"):
            pending = 0
        elif pending is not None and _INSN.match(line):
            pending += 1
        elif match := _EXEC.search(line):
            block, pc = match.group(1), int(match.group(2), 16)
            if pending is not None:
                sizes[block], pending = pending, None
            if lo <= pc < hi:
                total += sizes[block]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("lo", type=lambda s: int(s, 0))
    parser.add_argument("hi", type=lambda s: int(s, 0))
    args = parser.parse_args()
    with open(args.log) as fh:
        print(executed_instructions(fh.read(), args.lo, args.hi))


if __name__ == "__main__":
    main()
