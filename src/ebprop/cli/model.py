"""``ebprop evaluate``, ``predict`` and ``info``: load a model, call the library, print.

The work is the library's: :func:`ebprop.inputs.model_split` finds the model's dataset,
:func:`ebprop.inputs.read_raw_inputs` decodes images, :func:`ebprop.metrics.evaluation_report`
and :func:`ebprop.metrics.model_memory` compute what is printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from ..datasets import DATASETS
from ..inputs import model_features, model_split, read_raw_inputs
from ..metrics import evaluation_report, model_memory
from ..persist import load_model
from .app import pct

__all__ = ["evaluate", "info", "predict"]


@click.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.option(
    "--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True
)
@click.option("--dataset", type=click.Choice(list(DATASETS)), help="Override.")
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option("--bins", type=click.IntRange(min=1), default=15, show_default=True, help="ECE bins.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def evaluate(model_path: Path, split, dataset, data_dir, bins, as_json) -> None:
    """Error of both readouts, per-class error, confusion matrix and calibration of MODEL."""
    model = load_model(model_path)
    try:
        X, y, name, warn = model_split(model, split, dataset, data_dir)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if warn:
        click.echo(warn, err=True)
    report = evaluation_report(model.estimator, model_features(model, X), y, bins)
    report |= {"model": str(model_path), "dataset": name, "split": split}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{model_path}: {name} {split} split, {report['n_samples']} images")
    click.echo(f"  error  EBP-P {pct(report['error_p'])}   EBP-D {pct(report['error_d'])}")
    click.echo(
        f"  EBP-P calibration: NLL {report['nll']:.4f}  Brier {report['brier']:.4f}  "
        f"ECE({bins} bins) {report['ece']:.4f}"
    )
    click.echo("  per-class error (EBP-P / EBP-D):")
    for c, ep, ed in zip(
        report["classes"], report["per_class_error_p"], report["per_class_error_d"], strict=True
    ):
        click.echo(f"    {c!s:>6}  {pct(ep)}  {pct(ed)}")
    cm = np.array(report["confusion_matrix_p"])
    w = max(4, len(str(cm.max())) + 1)
    click.echo("  confusion matrix (EBP-P; rows true, columns predicted):")
    click.echo("        " + "".join(f"{c!s:>{w}}" for c in report["classes"]))
    for c, row in zip(report["classes"], cm, strict=True):
        click.echo(f"  {c!s:>6}" + "".join(f"{v:>{w}}" for v in row))


# ---------------------------------------------------------------------------- predict
@click.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.argument(
    "inputs", metavar="IMAGE...", nargs=-1, required=True, type=click.Path(path_type=Path)
)
@click.option(
    "--invert",
    type=click.Choice(["auto", "yes", "no"]),
    default="auto",
    show_default=True,
    help="Invert images (auto: when the border is light, i.e. dark ink on white).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def predict(model_path: Path, inputs: tuple[Path, ...], invert: str, as_json: bool) -> None:
    """Classify image files (PNG/JPEG, any size) or .npy arrays of raw images with MODEL."""
    model = load_model(model_path)
    if model.preprocessor is None:
        raise ValueError(f"{model_path}: the model has no preprocessor; cannot read images")
    names, raw = read_raw_inputs(model, list(inputs), invert)
    X = model_features(model, raw)
    est = model.estimator
    proba = est.predict_proba(X)
    pred_p = est.classes_[proba.argmax(axis=1)]
    pred_d = est.predict(X, readout="deterministic")
    rows = [
        {"input": n, "class": p.item(), "probability": float(pr.max()), "class_d": d.item()}
        for n, p, pr, d in zip(names, pred_p, proba, pred_d, strict=True)
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(len(n) for n in names)
    for r in rows:
        click.echo(
            f"{r['input']:<{width}}  class {r['class']!s}  p={r['probability']:.3f}  "
            f"(EBP-D: {r['class_d']!s})"
        )


# ---------------------------------------------------------------------------- info
def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


@click.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(model_path: Path, as_json: bool) -> None:
    """Summarise MODEL: layers, 1-bit and 32-bit parameters, memory trained and deployed."""
    model = load_model(model_path)
    est, meta = model.estimator, model.metadata
    rows = model_memory(est)
    total = {k: sum(r[k] for r in rows) for k in rows[0] if k not in ("layer", "shape")}
    pre = meta.get("preprocessor") or {}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": str(model_path),
                    "format_version": meta["format_version"],
                    "ebprop_version": meta.get("ebprop_version"),
                    "weights": est.weights,
                    "dtype": str(np.dtype(est.dtype)),
                    "sizes": meta["architecture"]["sizes"],
                    "classes": est.classes_.tolist(),
                    "preprocessor": pre or None,
                    "layers": rows,
                    "total": total,
                    "metrics": meta.get("metrics", {}),
                },
                indent=2,
            )
        )
        return
    sizes = meta["architecture"]["sizes"]
    click.echo(
        f"{model_path}: ebprop model format {meta['format_version']} "
        f"(written by ebprop {meta.get('ebprop_version')})"
    )
    click.echo(
        f"  {est.weights} weights, trained as {np.dtype(est.dtype).name}; "
        f"{' → '.join(map(str, sizes))}; {len(est.classes_)} classes"
    )
    if pre:
        filters = ",".join(pre.get("filters") or []) or "none"
        click.echo(
            f"  input: {pre['image_shape'][0]}x{pre['image_shape'][1]} images → "
            f"{pre['n_features']} features (scaling {pre['scaling']}, filters {filters}, "
            f"deskew {'on' if pre['deskew'] else 'off'})"
        )
    header = (
        f"  {'layer':<6}{'shape':>14}{'1-bit':>12}{'32-bit':>10}{'trained':>12}{'deployed':>12}"
    )
    click.echo(header)
    click.echo("  " + "-" * (len(header) - 2))
    for r in rows:
        shape = f"{r['shape'][0]} x {r['shape'][1]}"
        click.echo(
            f"  {r['layer']:<6}{shape:>14}{r['params_1bit']:>12,}{r['params_32bit']:>10,}"
            f"{_bytes(r['bytes_trained']):>12}{_bytes(r['bytes_deployed']):>12}"
        )
    click.echo("  " + "-" * (len(header) - 2))
    click.echo(
        f"  {'total':<6}{'':>14}{total['params_1bit']:>12,}{total['params_32bit']:>10,}"
        f"{_bytes(total['bytes_trained']):>12}{_bytes(total['bytes_deployed']):>12}"
    )
    ratio = total["bytes_trained"] / max(total["bytes_deployed"], 1)
    click.echo(
        f"  deployed: weights bit-packed (rows padded to 64-bit words), biases float32; "
        f"{ratio:.1f}x smaller than as trained"
    )
    m = meta.get("metrics") or {}
    if m.get("test_error_p") is not None:
        click.echo(
            f"  at epoch {m.get('epoch')}: test error EBP-P {pct(m['test_error_p'])}, "
            f"EBP-D {pct(m['test_error_d'])}"
        )
