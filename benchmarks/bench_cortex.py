"""Flash, RAM and instructions per image of an exported binary network on Cortex-M0+ and M4.

Run as a script (never part of the test suite; needs gcc-arm-none-eabi, libnewlib-arm-none-eabi,
qemu-system-arm)::

    python benchmarks/bench_cortex.py runs/model.npz --data-dir DATA_DIR

For each target (cortex-m0plus on QEMU's microbit board, a Cortex-M0 with the same ARMv6-M
instruction set; cortex-m4 on mps2-an386) it writes the project of ``ebprop export --format c
--target``, then

1. builds every popcount × first-layer variant and counts instructions on ``--variant-images``
   test images (the comparison behind each target's default);
2. builds the default and classifies ``--images`` test images inside QEMU, checks every
   prediction against ``PackedNetwork`` (exit status 1 on any difference), and reports flash
   (text + rodata + data of the whole program and of model.o alone), RAM (data + bss + the stack
   peak measured by painting), instructions per image (``-icount shift=0`` + SysTick) and
   images/s at ``--clock-m0`` / ``--clock-m4`` MHz assuming one cycle per instruction.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from ebprop.datasets import load_dataset
from ebprop.packed import PackedNetwork, pack_estimator, qemu, read_packed
from ebprop.packed.conv import layers_text
from ebprop.packed.export_c import BOARDS, TARGETS, write_c_project

VARIANTS = [(popcount, layer) for layer in ("SUMS", "PLANES") for popcount in ("SWAR", "TABLE")]


def load_packed(path: str):
    if path.endswith(".ebpb"):
        return read_packed(path)
    from ebprop.persist import load_model

    loaded = load_model(path)
    return pack_estimator(loaded.estimator, loaded.preprocessor)


def flags(popcount: str, layer: str) -> str:
    return f"-DEBPROP_POPCOUNT_{popcount} -DEBPROP_FIRST_LAYER_{layer}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a binary model .npz or a packed .ebpb file")
    parser.add_argument("--data-dir", required=True, help="folder holding the dataset")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--images", type=int, default=1000, help="images checked in QEMU")
    parser.add_argument("--variant-images", type=int, default=100)
    parser.add_argument("--clock-m0", type=float, default=48.0, help="MHz (Cortex-M0+)")
    parser.add_argument("--clock-m4", type=float, default=100.0, help="MHz (Cortex-M4)")
    parser.add_argument("--keep", type=Path, help="keep the built projects in this folder")
    args = parser.parse_args(argv)
    if missing := qemu.missing_tools():
        parser.error(
            f"missing tools: {', '.join(missing)} (apt-get install gcc-arm-none-eabi "
            "libnewlib-arm-none-eabi qemu-system-arm make)"
        )
    model = load_packed(args.model)
    ds = load_dataset(args.dataset, args.data_dir, download=False)
    images = ds.X_test[: args.images].reshape(min(args.images, len(ds.X_test)), -1)
    net = PackedNetwork(model)
    ref = np.searchsorted(model.classes, net.predict(images))
    arch = layers_text(model)
    print(f"model {args.model}: layers {arch}; {len(images)} {args.dataset} test images")
    rows, ok = [], True
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for target, clock in (("cortex-m0plus", args.clock_m0), ("cortex-m4", args.clock_m4)):
            folder = root / target
            write_c_project(model, folder, target)
            print(
                f"\n{target} on QEMU {BOARDS[target][0]}: instructions/image on "
                f"{args.variant_images} images"
            )
            for popcount, layer in VARIANTS:
                if model.layers is not None and layer == "PLANES":
                    continue  # a CNN's first layer has SUMS only
                qemu.build(folder, flags(popcount, layer))
                r = qemu.run(folder, images[: args.variant_images])
                same = np.array_equal(r.classes, ref[: args.variant_images])
                ok &= same
                print(
                    f"  popcount {popcount:<5} first layer {layer:<6} "
                    f"{r.instructions.mean():>11,.0f}  "
                    f"predictions {'identical' if same else 'DIFFER'}"
                )
            default = TARGETS[target]
            sizes = qemu.build(folder)
            r = qemu.run(folder, images)
            same = int((r.classes == ref).sum())
            ok &= same == len(images)
            prog, mod = sizes["program"], sizes["model"]
            ins = r.instructions
            rows.append((target, BOARDS[target][0], default, prog, mod, r, clock, same))
            print(
                f"  default (popcount {default.popcount}, first layer {default.first_layer}): "
                f"{same}/{len(images)} predictions identical to PackedNetwork"
            )
            print(
                f"  flash {prog.flash:,} B (model.o {mod.flash:,} B); RAM data+bss "
                f"{prog.data + prog.bss:,} B + stack peak {r.stack_peak} B = "
                f"{prog.data + prog.bss + r.stack_peak:,} B; instructions/image mean "
                f"{ins.mean():,.0f} (min {ins.min():,.0f}, max {ins.max():,.0f}); "
                f"{clock * 1e6 / ins.mean():,.0f} images/s at {clock:g} MHz"
            )
    print(
        "\n| core (QEMU board) | flash: program (model) | RAM: data+bss + stack peak | "
        "instructions/image mean (max) | images/s at clock |"
    )
    print("|---|---:|---:|---:|---:|")
    for target, board, _, prog, mod, r, clock, _ in rows:
        ram = prog.data + prog.bss
        print(
            f"| {target} ({board}) | {prog.flash / 1024:.1f} KiB ({mod.flash / 1024:.1f} KiB) | "
            f"{ram:,} + {r.stack_peak} = {(ram + r.stack_peak) / 1024:.2f} KiB | "
            f"{r.instructions.mean():,.0f} ({r.instructions.max():,.0f}) | "
            f"{clock * 1e6 / r.instructions.mean():,.0f} at {clock:g} MHz |"
        )
    if not ok:
        print("\nFAILED: QEMU predictions differ from PackedNetwork", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
