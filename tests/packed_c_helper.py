"""Compile an exported C model with a tiny main.c and run it on raw images (test helper)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ebprop.packed import write_c_model

CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
requires_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc) on PATH")

MAIN_C = r"""
#include <stdio.h>
#include <stdint.h>
#include "model.h"

int main(int argc, char **argv)
{
    static uint8_t img[EBPROP_N_INPUTS];
    FILE *f = fopen(argv[1], "rb");
    (void)argc;
    if (!f) return 2;
    while (fread(img, 1, EBPROP_N_INPUTS, f) == EBPROP_N_INPUTS)
        printf("%d\n", ebprop_predict(img));
    fclose(f);
    return 0;
}
"""


def c_predict(
    model,
    images: np.ndarray,
    folder: Path,
    defines: tuple[str, ...] = (),
    target: str = "host",
) -> np.ndarray:
    """Class indices from the compiled C export of ``model`` on uint8 ``images`` (n, ...).

    The host compiler builds the code of any target (the Cortex-M code is portable C with
    32-bit words), so the arithmetic of every target is checked even without cross tools.
    """
    write_c_model(model, folder, target)
    (folder / "main.c").write_text(MAIN_C)
    exe = folder / "predict"
    flags = ["-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic", "-Werror", *defines]
    subprocess.run(
        [CC, *flags, "-o", str(exe), str(folder / "model.c"), str(folder / "main.c")],
        check=True,
        capture_output=True,
        text=True,
    )
    data = folder / "images.bin"
    data.write_bytes(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    out = subprocess.run([str(exe), str(data)], check=True, capture_output=True, text=True)
    return np.array([int(v) for v in out.stdout.split()], dtype=np.intp)
