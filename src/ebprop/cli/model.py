"""``ebprop evaluate``, ``predict`` and ``info``: load a model, call the library, print.

MODEL is a model ``.npz``, a run folder (its ``model.npz``), or a packed ``.ebpb`` (EBP-D only:
it holds the sign network, not the posterior). The work is the library's:
:func:`ebprop.inputs.model_split` finds the model's dataset, :func:`ebprop.inputs.read_inputs`
decodes images, :func:`ebprop.metrics.evaluation_report` and :func:`ebprop.metrics.model_memory`
compute what is printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from ..core.architecture import DenseSpec, layer_shapes, parse_architecture
from ..datasets import load_dataset
from ..datasets.appearance import appearance_text
from ..exceptions import EBPropError
from ..inputs import model_features, model_split, read_inputs
from ..kernels.system import system_report, vector_name
from ..metrics import confusion_matrix, error_rate, evaluation_report, model_memory
from ..packed import PackedNetwork
from ..persist import LoadedModel, load_model, schedule_ran
from .app import pct

__all__ = ["evaluate", "info", "open_model", "predict"]

_PACKED_NOTE = "packed .ebpb: EBP-D (sign network) only, no EBP-P probabilities"
_BINARYNET_NOTE = "BinaryNet: one readout, its sign network (no probabilities)"


def open_model(path: Path):
    """A :class:`LoadedModel` for a model ``.npz`` or run folder; a ``PackedNetwork`` for .ebpb."""
    if path.is_dir():
        if not (path / "model.npz").is_file():
            raise FileNotFoundError(
                f"{path}: no model.npz in this folder; give a run folder that finished an epoch, "
                "a model .npz or a .ebpb"
            )
        path = path / "model.npz"
    if path.suffix.lower() == ".ebpb":
        return PackedNetwork.load(path)
    return load_model(path)


def _names(model) -> tuple[str, ...]:
    if isinstance(model, LoadedModel):
        return model.class_names
    return model.model.names


def _name_of(model, labels: np.ndarray) -> list[str]:
    """Class names of predicted labels."""
    classes = model.estimator.classes_ if isinstance(model, LoadedModel) else model.classes_
    names = _names(model)
    return [names[i] for i in np.searchsorted(classes, labels)]


@click.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.option(
    "--split",
    type=click.Choice(["test", "val", "train", "all"]),
    default="test",
    show_default=True,
    help="all: the three together (for data the model was not trained on).",
)
@click.option(
    "--dataset",
    help="Another dataset: a name or a path (folder of images, .npz); its classes are matched "
    "to the model's by name.",
)
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option("--bins", type=click.IntRange(min=1), default=15, show_default=True, help="ECE bins.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def evaluate(model_path: Path, split, dataset, data_dir, bins, as_json) -> None:
    """Error of both readouts, per-class error, confusion matrix and calibration of MODEL.

    MODEL: a model .npz, a run folder, or a .ebpb (EBP-D only; needs --dataset).
    """
    model = open_model(model_path)
    if not isinstance(model, LoadedModel):
        _evaluate_packed(model, model_path, split, dataset, data_dir, as_json)
        return
    try:
        X, y, name, warn = model_split(model, split, dataset, data_dir)
    except ValueError as exc:
        if isinstance(exc, EBPropError):  # bad data: one line, status 1
            raise
        raise click.UsageError(str(exc)) from None
    if warn:
        click.echo(warn, err=True)
    if model.method == "binarynet":
        _evaluate_sign_network(model, model_path, model_features(model, X), y, name, split, as_json)
        return
    report = evaluation_report(model.estimator, model_features(model, X), y, bins)
    names = list(model.class_names)
    report |= {"model": str(model_path), "dataset": name, "split": split, "class_names": names}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    what = "images" if X.ndim >= 3 else "samples"
    click.echo(f"{model_path}: {name} {split} split, {report['n_samples']} {what}")
    click.echo(f"  error  EBP-P {pct(report['error_p'])}   EBP-D {pct(report['error_d'])}")
    click.echo(
        f"  EBP-P calibration: NLL {report['nll']:.4f}  Brier {report['brier']:.4f}  "
        f"ECE({bins} bins) {report['ece']:.4f}"
    )
    _per_class(names, report["per_class_error_p"], report["per_class_error_d"])
    _confusion(names, np.array(report["confusion_matrix_p"]), "EBP-P")


def _evaluate_sign_network(model, model_path, X, y, name, split, as_json) -> None:
    """Error of a BinaryNet model's one readout, its sign network (the EBP-D form it folds to)."""
    est = model.estimator
    pred = est.predict(X, readout="deterministic")
    per = [float(np.mean(pred[y == c] != c)) if np.any(y == c) else None for c in est.classes_]
    names = list(model.class_names)
    report = {
        "model": str(model_path),
        "method": "binarynet",
        "dataset": name,
        "split": split,
        "n_samples": int(len(y)),
        "readout": "deterministic",
        "error_d": error_rate(y, pred),
        "class_names": names,
        "per_class_error_d": per,
        "confusion_matrix_d": confusion_matrix(y, pred, est.classes_).tolist(),
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{model_path}: {name} {split} split, {len(y)} samples ({_BINARYNET_NOTE})")
    click.echo(f"  error  BinaryNet {pct(report['error_d'])}")
    _per_class(names, None, per)
    _confusion(names, np.array(report["confusion_matrix_d"]), "BinaryNet")


def _per_class(names: list[str], err_p: list | None, err_d: list) -> None:
    w = max(6, *(len(n) for n in names))
    click.echo("  per-class error (EBP-P / EBP-D):" if err_p else "  per-class error (EBP-D):")
    for k, n in enumerate(names):
        click.echo(f"    {n:>{w}}  " + (f"{pct(err_p[k])}  " if err_p else "") + pct(err_d[k]))


def _confusion(names: list[str], cm: np.ndarray, readout: str) -> None:
    """The confusion matrix; columns by class index (the rows name them)."""
    w = max(4, len(str(cm.max())) + 1)
    rw = max(6, *(len(n) for n in names))
    click.echo(f"  confusion matrix ({readout}; rows true, columns predicted, by row number):")
    click.echo("  " + " " * (rw + 5) + "".join(f"{k:>{w}}" for k in range(len(names))))
    for k, (n, row) in enumerate(zip(names, cm, strict=True)):
        click.echo(f"  {n:>{rw}} {k:>3} " + "".join(f"{v:>{w}}" for v in row))


def _evaluate_packed(net, model_path, split, dataset, data_dir, as_json) -> None:
    """EBP-D error of a .ebpb on a dataset (the file records no dataset: --dataset needed)."""
    if dataset is None:
        raise click.UsageError(
            f"{model_path}: a .ebpb records no dataset; pass --dataset ({_PACKED_NOTE})"
        )
    ds = load_dataset(dataset, data_dir)
    X, y = ds.split(split)
    names = _names(net)
    # labels are indices into the data's classes, as the packed model's classes are
    pred = net.predict(X)
    per = [float(np.mean(pred[y == c] != c)) if np.any(y == c) else None for c in net.classes_]
    report = {
        "model": str(model_path),
        "dataset": dataset,
        "split": split,
        "n_samples": int(len(y)),
        "readout": "deterministic",
        "error_d": error_rate(y, pred),
        "class_names": list(names),
        "per_class_error_d": per,
        "confusion_matrix_d": confusion_matrix(y, pred, net.classes_).tolist(),
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{model_path}: {dataset} {split} split, {len(y)} samples ({_PACKED_NOTE})")
    click.echo(f"  error  EBP-D {pct(report['error_d'])}")
    _per_class(list(names), None, per)
    _confusion(list(names), np.array(report["confusion_matrix_d"]), "EBP-D")


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
    help="Invert images. auto: to the polarity of the model's training images (dark ink on "
    "light or light on dark, recorded in the model); models written before format 2: when the "
    "border is light.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def predict(model_path: Path, inputs: tuple[Path, ...], invert: str, as_json: bool) -> None:
    """Classify image files (PNG/JPEG, any size) or .npy arrays of raw images with MODEL.

    MODEL: a model .npz, a run folder, or a .ebpb (EBP-D only: no probability).
    """
    model = open_model(model_path)
    appearance = (
        model.metadata.get("input") if isinstance(model, LoadedModel) else model.model.input
    )
    if appearance is None and invert == "auto" and any(p.suffix.lower() != ".npy" for p in inputs):
        click.echo(
            f"note: {model_path} does not record how its training images looked (written before "
            "model format 2): --invert auto guesses from each image's border",
            err=True,
        )
    if not isinstance(model, LoadedModel):
        prep = model.model.preprocessing
        names, raw = read_inputs(
            list(inputs), tuple(prep["image_shape"]), prep["max_value"], invert, appearance
        )
        pred_d = model.predict(np.rint(raw).astype(np.uint8))
        rows = [
            {"input": n, "class": None, "probability": None, "class_d": d.item(), "name_d": nd}
            for n, d, nd in zip(names, pred_d, _name_of(model, pred_d), strict=True)
        ]
    else:
        pre = model.preprocessor
        if pre is None:
            raise ValueError(f"{model_path}: the model has no preprocessor; cannot read inputs")
        names, raw = read_inputs(
            list(inputs), tuple(pre.image_shape_), pre.max_value_, invert, appearance
        )
        X = model_features(model, raw)
        est = model.estimator
        if model.method == "binarynet":  # one readout, the sign network: no probability
            pred_d = est.predict(X, readout="deterministic")
            rows = [
                {"input": n, "class": None, "probability": None, "class_d": d.item(), "name_d": nd}
                for n, d, nd in zip(names, pred_d, _name_of(model, pred_d), strict=True)
            ]
            _print_predictions(rows, names, as_json, "BinaryNet")
            return
        proba = est.predict_proba(X)
        pred_p = est.classes_[proba.argmax(axis=1)]
        pred_d = est.predict(X, readout="deterministic")
        rows = [
            {
                "input": n,
                "class": p.item(),
                "name": np_,
                "probability": float(pr.max()),
                "class_d": d.item(),
                "name_d": nd,
            }
            for n, p, np_, pr, d, nd in zip(
                names,
                pred_p,
                _name_of(model, pred_p),
                proba,
                pred_d,
                _name_of(model, pred_d),
                strict=True,
            )
        ]
    _print_predictions(rows, names, as_json, "EBP-D")


def _print_predictions(rows: list[dict], names: list[str], as_json: bool, readout: str) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(len(n) for n in names)
    for r in rows:
        if r["probability"] is None:
            click.echo(f"{r['input']:<{width}}  {readout} class {r['name_d']}")
        else:
            click.echo(
                f"{r['input']:<{width}}  class {r['name']}  p={r['probability']:.3f}  "
                f"(EBP-D: {r['name_d']})"
            )


# ---------------------------------------------------------------------------- info
def _conv_layers(architecture: dict) -> list[dict] | None:
    """Each layer's token and output shape (h, w, c) for a conv model; None for an MLP."""
    if "layers" not in architecture:
        return None
    specs = (*parse_architecture(architecture["layers"]), DenseSpec(architecture["sizes"][-1]))
    shapes = layer_shapes(specs, tuple(architecture["input_shape"]))
    return [
        {"layer": spec.token(), "output_shape": list(shape)}
        for spec, shape in zip(specs, shapes, strict=True)
    ]


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


@click.command()
@click.argument("model_path", metavar="MODEL", required=False, type=click.Path(path_type=Path))
@click.option(
    "--system",
    is_flag=True,
    help="Instead of a model: the versions, the BLAS, the vector width and the kernel cache folder "
    "that training uses here.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(model_path: Path | None, system: bool, as_json: bool) -> None:
    """Summarise MODEL: layers, 1-bit and 32-bit parameters, memory trained and deployed.

    MODEL: a model .npz, a run folder, or a .ebpb (EBP-D only). With --system, no MODEL: what the
    training engine finds on this machine.
    """
    if system:
        if model_path is not None:
            raise click.UsageError("--system describes this machine; give it no MODEL")
        _info_system(as_json)
        return
    if model_path is None:
        raise click.UsageError("missing MODEL (a model .npz, run folder or .ebpb), or --system")
    model = open_model(model_path)
    if not isinstance(model, LoadedModel):
        _info_packed(model, model_path, as_json)
        return
    est, meta = model.estimator, model.metadata
    rows = model_memory(est)
    total = {k: sum(r[k] for r in rows) for k in rows[0] if k not in ("layer", "shape")}
    pre = meta.get("preprocessor") or {}
    conv = _conv_layers(meta["architecture"])
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": str(model_path),
                    "architecture": meta["architecture"].get("layers"),
                    "layer_shapes": conv,
                    "format_version": meta["format_version"],
                    "ebprop_version": meta.get("ebprop_version"),
                    "git_commit": meta.get("git_commit"),
                    "vector_bits": meta.get("vector_bits"),
                    "method": model.method,
                    "readouts": ["deterministic"]
                    if model.method == "binarynet"
                    else ["probabilistic", "deterministic"],
                    "weights": est.weights,
                    "dtype": str(np.dtype(est.dtype)),
                    "sizes": meta["architecture"]["sizes"],
                    "classes": est.classes_.tolist(),
                    "class_names": list(model.class_names),
                    "preprocessor": pre or None,
                    "input": meta.get("input"),
                    "reinforcement": schedule_ran(meta),
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
        f"(written by ebprop {meta.get('ebprop_version')}{_provenance_note(meta)})"
    )
    click.echo(
        f"  {est.weights} weights, trained as {np.dtype(est.dtype).name}; "
        f"{' → '.join(map(str, sizes))}; {len(est.classes_)} classes"
    )
    click.echo(f"  classes: {_short(model.class_names)}")
    click.echo(f"  reinforcement: {schedule_ran(meta)}")
    if model.method == "binarynet":
        click.echo(f"  {_BINARYNET_NOTE}: ±1 weights, batch norm and biases folded into thresholds")
    gain = f", input gain {pre['input_gain']:g}" if pre and "input_gain" in pre else ""
    if pre and len(pre["image_shape"]) == 1:
        click.echo(f"  input: {pre['image_shape'][0]} features (scaling {pre['scaling']}{gain})")
    elif pre:
        filters = ",".join(pre.get("filters") or []) or "none"
        click.echo(
            f"  input: {'x'.join(map(str, pre['image_shape']))} images → "
            f"{pre['n_features']} features (scaling {pre['scaling']}, filters {filters}, "
            f"deskew {'on' if pre['deskew'] else 'off'}{gain})"
        )
    if pre:
        click.echo(f"  trained on: {appearance_text(meta.get('input'))}")
    if conv:
        steps = [f"{r['layer']} {'x'.join(map(str, r['output_shape']))}" for r in conv]
        shape = "x".join(map(str, meta["architecture"]["input_shape"]))
        click.echo(f"  layers: {shape} → {' → '.join(steps)}")
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
    if model.method == "binarynet" and m.get("test_error_d") is not None:
        click.echo(f"  at epoch {m.get('epoch')}: test error BinaryNet {pct(m['test_error_d'])}")
    elif m.get("test_error_p") is not None:
        click.echo(
            f"  at epoch {m.get('epoch')}: test error EBP-P {pct(m['test_error_p'])}, "
            f"EBP-D {pct(m['test_error_d'])}"
        )


def _provenance_note(meta: dict) -> str:
    """The header's commit and vector width as ", commit 1a2b3c4d5e6f, 512-bit vectors"
    (empty for files written before they were recorded)."""
    note = ""
    if meta.get("git_commit"):
        note += f", commit {str(meta['git_commit'])[:12]}"
    if meta.get("vector_bits"):
        note += f", {meta['vector_bits']}-bit vectors"
    return note


def _short(names, limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def _info_packed(net, model_path: Path, as_json: bool) -> None:
    prep = net.model.preprocessing
    sizes = list(net.sizes)
    info = {
        "model": str(model_path),
        "format": "ebpb",
        "readout": "deterministic",
        "sizes": sizes,
        "classes": net.classes_.tolist(),
        "class_names": list(_names(net)),
        "preprocessing": prep,
        "input": net.model.input,
        "weight_bytes": int(net.weight_nbytes),
        "file_bytes": model_path.stat().st_size,
    }
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"{model_path}: {_PACKED_NOTE}")
    click.echo(
        f"  {' → '.join(map(str, sizes))}; {len(net.classes_)} classes: {_short(_names(net))}"
    )
    shape = "x".join(map(str, prep["image_shape"]))
    click.echo(f"  input: {shape} uint8 images, pixels 0..{prep['max_value']} ({prep['scaling']})")
    click.echo(f"  trained on: {appearance_text(net.model.input)}")
    click.echo(f"  packed weights {_bytes(net.weight_nbytes)}, file {_bytes(info['file_bytes'])}")


def _info_system(as_json: bool) -> None:
    report = system_report()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    versions = ", ".join(f"{k} {v or '(not installed)'}" for k, v in report["versions"].items())
    click.echo(f"versions: {versions}")
    click.echo(f"BLAS for the compiled loop: {report['blas'] or 'not found'}")
    if report["engine"] == "compiled":
        click.echo("engine: the compiled loop (large epochs; --jobs 0 for the NumPy loop)")
    else:
        click.echo(f"engine: the NumPy loop, because {report['reason']}")
    if report["vector_bytes"] is not None:
        features = report["cpu_features"]
        target = f"NUMBA_CPU_FEATURES={features}" if features else "this CPU"
        click.echo(f"vector width: {vector_name(report['vector_bytes'])}, compiled for {target}")
        click.echo(f"kernel cache: {report['cache_folder']}")
    click.echo(f"CPUs available: {report['cpus']}")
    spin = report["omp_spincount"]
    click.echo(
        f"threads: numba's {report['threading_layer']} layer"
        + (f", idle threads spin GOMP_SPINCOUNT={spin} rounds" if spin else "")
    )
