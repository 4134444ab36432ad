"""Deployment commands ``ebprop export`` and ``ebprop bench-inference`` (over ebprop.packed)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import numpy as np

from ..datasets import load_dataset
from ..inputs import model_data_dir
from ..packed.bench import benchmark_inference
from ..packed.conv import layers_text, weight_count
from ..packed.export_c import BOARD_FILES, write_c_model, write_c_project
from ..packed.fileformat import write_packed
from ..packed.runtime import pack_estimator
from ..persist import load_model


def _load(model_path: str):
    return load_model(model_path)


def _kb(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def _refuse_overwriting(model: str, outputs: list[Path]) -> None:
    """Refuse an output path that is the input model (``export m.npz -o m.npz``)."""
    src = Path(model).resolve()
    for out in outputs:
        if out.resolve() == src or (out.exists() and src.exists() and out.samefile(src)):
            raise FileExistsError(
                f"-o {out}: that is the input model {model}; it would be overwritten. Give "
                "another output path"
            )


@click.command("export")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["packed", "c"]),
    default="packed",
    show_default=True,
    help="packed: a .ebpb file; c: model.h + model.c in a folder.",
)
@click.option("-o", "--output", type=click.Path(), help="Output file (packed) or folder (c).")
@click.option(
    "--target",
    type=click.Choice(["host", "cortex-m4", "cortex-m0plus"]),
    default="host",
    show_default=True,
    help="With --format c: host (64-bit words) or a ready-to-build Cortex-M project (32-bit "
    "words, startup, linker script, QEMU harness, Makefile; `make run` boots it in QEMU).",
)
def export(model: str, fmt: str, output: str | None, target: str) -> None:
    """Export the EBP-D network of a binary MODEL (.npz) as packed bits."""
    if target != "host" and fmt != "c":
        raise click.UsageError(f"--target {target} needs --format c")
    loaded = _load(model)
    source = {
        "model_file": Path(model).name,
        "ebprop_metadata_format": loaded.metadata.get("format_version"),
    }
    packed = pack_estimator(
        loaded.estimator,
        loaded.preprocessor,
        source=source,
        class_names=loaded.class_names,
        input=loaded.metadata.get("input"),
    )
    f32 = 4 * weight_count(packed)
    wbytes = sum(w.nbytes for w in packed.weights)
    if fmt == "packed":
        out = Path(output) if output else Path(model).with_suffix(".ebpb")
        _refuse_overwriting(model, [out])
        size = write_packed(out, packed)
        click.echo(
            f"wrote {out} ({_kb(size)}): layers {layers_text(packed)}, packed weights "
            f"{_kb(wbytes)} vs {_kb(f32)} as float32 ({f32 / wbytes:.1f}x smaller; whole file "
            f"{f32 / size:.1f}x)"
        )
    else:
        folder = (
            Path(output)
            if output
            else Path(model).with_suffix("").with_name(Path(model).stem + "_c")
        )
        written = ["model.h", "model.c"] + ([] if target == "host" else list(BOARD_FILES))
        _refuse_overwriting(model, [folder] + [folder / name for name in written])
        if target == "host":
            h_path, c_path = write_c_model(packed, folder)
            click.echo(f"wrote {h_path} and {c_path}: int ebprop_predict(const uint8_t *pixels)")
        else:
            paths = write_c_project(packed, folder, target)
            click.echo(
                f"wrote {folder}/ ({', '.join(p.name for p in paths)}) for {target}: "
                f"`make` cross-compiles, `make run IMAGES=file` classifies raw images in QEMU"
            )


def _bench_images(loaded, dataset: str | None, data_dir: str | None, n: int, seed: int):
    """Test images of the model's dataset, or random images of its shape when unavailable."""
    opts = loaded.metadata.get("training_options") or {}
    name = dataset or opts.get("dataset")
    if name:
        try:
            ds = load_dataset(name, model_data_dir(loaded, data_dir), download=False)
            return ds.X_test, f"{name} test images"
        except (OSError, ValueError) as exc:
            click.echo(f"note: cannot load {name} ({exc}); using random images", err=True)
    pre = loaded.preprocessor
    shape = tuple(pre.image_shape_) if pre is not None else (1, loaded.estimator.n_features_in_)
    rng = np.random.default_rng(seed)
    m = int(pre.max_value_) if pre is not None else 255
    return rng.integers(0, m + 1, size=(n, *shape), dtype=np.uint8), "uniform random images"


@click.command("bench-inference")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--dataset", help="Images to classify (default: the model's dataset).")
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option(
    "--batch",
    "batches",
    type=click.IntRange(min=1),
    multiple=True,
    default=(1, 10_000),
    show_default=True,
    help="Batch sizes (repeatable).",
)
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True)
def bench_inference(
    model: str, dataset: str | None, data_dir: str | None, batches: tuple[int, ...], repeats: int
) -> None:
    """Images/s of the packed runtime vs the float32 EBP-D path, in one run, and file sizes."""
    loaded = _load(model)
    packed = pack_estimator(loaded.estimator, loaded.preprocessor)
    images, what = _bench_images(loaded, dataset, data_dir, max(batches), 0)
    with tempfile.TemporaryDirectory() as tmp:
        ebpb = write_packed(Path(tmp) / "model.ebpb", packed)
    f32 = 4 * weight_count(packed)
    wbytes = sum(w.nbytes for w in packed.weights)
    click.echo(f"network {layers_text(packed)}; {what}")
    click.echo(
        f"sizes: model .npz {_kb(Path(model).stat().st_size)}, weights as float32 {_kb(f32)}, "
        f"packed weights {_kb(wbytes)} ({f32 / wbytes:.1f}x smaller), .ebpb file {_kb(ebpb)} "
        f"({f32 / ebpb:.1f}x)"
    )
    rows = benchmark_inference(loaded.estimator, loaded.preprocessor, images, batches, repeats)
    ref = {r["batch"]: r["images_per_s"] for r in rows if r["path"] == "float32"}
    click.echo(f"{'path':<22}{'batch':>8}{'images/s':>14}{'vs float32':>12}")
    for r in rows:
        click.echo(
            f"{r['path']:<22}{r['batch']:>8,}{r['images_per_s']:>14,.0f}"
            f"{r['images_per_s'] / ref[r['batch']]:>11.2f}x"
        )


#: The commands this module adds to the ``ebprop`` group.
DEPLOY_COMMANDS = (export, bench_inference)
