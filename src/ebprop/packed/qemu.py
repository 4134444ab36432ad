"""Build an exported Cortex-M project and run it under QEMU (tests and benchmarks/bench_cortex.py).

Needs ``arm-none-eabi-gcc`` (Debian: gcc-arm-none-eabi, libnewlib-arm-none-eabi), ``make`` and
``qemu-system-arm``. Instruction counts come from SysTick under ``qemu -icount shift=0``: virtual
time advances one nanosecond per instruction, so ticks × (instructions per tick) = instructions,
the ratio measured by the harness on a loop of known length.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "qemu-system-arm", "make")
_SIZE_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+\d+\s+[0-9a-f]+\s+(\S+)$")


def missing_tools() -> list[str]:
    """The cross tools not on PATH (empty when the QEMU harness can run)."""
    return [t for t in TOOLS if shutil.which(t) is None]


@dataclass(frozen=True)
class Sizes:
    """Bytes from ``arm-none-eabi-size``: text (code + rodata + vectors), data, bss."""

    text: int
    data: int
    bss: int

    @property
    def flash(self) -> int:
        return self.text + self.data


@dataclass(frozen=True)
class QemuRun:
    """What the harness reported for a batch of images."""

    classes: np.ndarray  # (n,) class indices from ebprop_predict
    ticks: np.ndarray  # (n,) SysTick counts around each call
    instructions_per_tick: float
    stack_peak: int

    @property
    def instructions(self) -> np.ndarray:
        return self.ticks * self.instructions_per_tick


def _make(folder: Path, args: list[str], timeout: float) -> None:
    done = subprocess.run(
        ["make", "-s", *args], cwd=folder, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"make {' '.join(args)} failed in {folder}:\n{done.stderr.strip()}")


def build(folder: Path, extra_cflags: str = "", timeout: float = 300) -> dict[str, Sizes]:
    """``make model.elf`` in ``folder``; returns the sizes of model.o (the model alone) and
    model.elf (with startup and harness)."""
    folder = Path(folder)
    _make(folder, ["-B", "model.elf", f"EXTRA_CFLAGS={extra_cflags}"], timeout)
    out = subprocess.run(
        ["arm-none-eabi-size", "model.o", "model.elf"],
        cwd=folder,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    sizes = {}
    for line in out.splitlines():
        match = _SIZE_ROW.match(line)
        if match:
            text, data, bss, name = match.groups()
            sizes[Path(name).stem if name.endswith(".o") else "program"] = Sizes(
                int(text), int(data), int(bss)
            )
    return sizes


def run(folder: Path, images: np.ndarray, timeout: float = 600) -> QemuRun:
    """``make run`` on raw uint8 ``images`` (n, n_inputs); parses the harness's results."""
    folder = Path(folder)
    (folder / "images.bin").write_bytes(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    results = folder / "results.txt"
    results.unlink(missing_ok=True)
    _make(folder, ["run"], timeout)
    classes, ticks, calib, stack = [], [], None, None
    for line in results.read_text().splitlines():
        words = line.split()
        if words[0] == "calibration":
            calib = int(words[4]) / int(words[2])
        elif words[0] == "stack_peak_bytes":
            stack = int(words[1])
        elif words[0] == "images":
            assert int(words[1]) == len(classes)
        else:
            classes.append(int(words[0]))
            ticks.append(int(words[1]))
    if calib is None or stack is None or len(classes) != len(images):
        raise RuntimeError(f"incomplete harness output in {results}")
    return QemuRun(np.array(classes), np.array(ticks), calib, stack)
