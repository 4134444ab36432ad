"""The ``ebprop`` command line: a thin shell over :mod:`ebprop.runs`, :mod:`ebprop.persist` and
:mod:`ebprop.metrics`. Parse, call the library, render; nothing imports this module.

Other commands plug in with ``main.add_command(cmd)``; every command gets the one-line error
handling of :class:`_Main` (tracebacks only with ``ebprop --debug``).
"""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
import time
from pathlib import Path

import click
import numpy as np

from ._version import __version__
from .exceptions import EBPropError

__all__ = ["main"]

_EXPECTED_ERRORS = (EBPropError, OSError, ValueError, KeyError, FloatingPointError)


class _Main(click.Group):
    """A group that turns expected errors into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except _EXPECTED_ERRORS as exc:
            if ctx.params.get("debug"):
                raise
            msg = str(exc) or type(exc).__name__
            if isinstance(exc, KeyError):
                msg = f"missing key {msg}"
            click.echo(f"error: {msg.splitlines()[0] if msg else msg}", err=True)
            ctx.exit(1)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ebprop")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
def main(debug: bool) -> None:
    """Train and use Expectation Backpropagation networks (binary or real weights)."""


# ---------------------------------------------------------------------------- train
_HIDDEN_TOKEN = re.compile(r"^[0-9][0-9,]*$")


class _TrainCommand(click.Command):
    """Lets ``--hidden`` take several widths: ``--hidden 800 800`` (also ``800,800``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(args):
            tok = args[i]
            if tok == "--hidden":
                widths = []
                i += 1
                while i < len(args) and (_HIDDEN_TOKEN.match(args[i]) or args[i] == "none"):
                    widths.append(args[i])
                    i += 1
                out.append(f"--hidden={','.join(widths)}")
                continue
            out.append(tok)
            i += 1
        return super().parse_args(ctx, out)


def _parse_hidden(ctx, param, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    if value in ("", "none"):
        return ()
    try:
        widths = tuple(int(v) for v in value.split(",") if v)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give layer widths, e.g. --hidden 800 800") from None
    if not widths or min(widths) < 1:
        raise click.BadParameter(f"{value!r}: widths must be positive integers")
    return widths


def _parse_validation(ctx, param, value: str | None) -> int | float | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give a count (5000) or a fraction (0.1)") from None


def _pct(x: float | None) -> str:
    return "   -  " if x is None else f"{100 * x:5.2f}%"


def _epoch_line(r: dict, epochs: int) -> str:
    speed = f"{r['samples_per_s']:,.0f} img/s" if r.get("samples_per_s") else ""
    return (
        f"epoch {r['epoch']:>3}/{epochs}  train {_pct(r['train_error'])}  "
        f"val P {_pct(r['val_error_p'])} D {_pct(r['val_error_d'])}  "
        f"test P {_pct(r['test_error_p'])} D {_pct(r['test_error_d'])}  "
        f"{r['seconds']:.2f} s  {speed}"
    )


def _default_out(dataset: str) -> Path:
    base = Path("runs") / f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, k = base, 1
    while out.exists():
        k += 1
        out = base.with_name(f"{base.name}-{k}")
    return out


_TRAIN_FIELDS = {
    "dataset": "dataset",
    "data_dir": "data_dir",
    "hidden": "hidden",
    "weights": "weights",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "input_dropout": "input_dropout",
    "filters": "filters",
    "scaling": "scaling",
    "deskew": "deskew",
    "seed": "seed",
    "dtype": "dtype",
    "init_variance": "init_variance",
    "prior_variance": "prior_variance",
    "reinforcement": "reinforcement",
    "validation": "validation",
    "select_by": "select_by",
    "patience": "patience",
}


@main.command(cls=_TrainCommand)
@click.option(
    "--dataset",
    type=click.Choice(["digits", "mnist", "fashion-mnist"]),
    default="digits",
    show_default=True,
)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder holding the dataset.")
@click.option(
    "--hidden",
    callback=_parse_hidden,
    help="Hidden layer widths, e.g. --hidden 800 800; 'none' for no hidden layer. [default: 100]",
)
@click.option(
    "--weights", type=click.Choice(["binary", "real"]), default="binary", show_default=True
)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--input-dropout",
    type=click.FloatRange(0, 1, min_open=True),
    help="Keep probability of analytic input dropout (the authors used 0.8).",
)
@click.option("--filters", help="Filter banks: default, sobel, laplace, gabor, 'sobel,laplace'…")
@click.option(
    "--scaling",
    type=click.Choice(["unit", "symmetric", "binary", "standard"]),
    default="unit",
    show_default=True,
)
@click.option("--deskew", is_flag=True, help="Deskew images by their moments first.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True
)
@click.option("--init-variance", type=click.FloatRange(min=0, min_open=True), default=1.0)
@click.option("--prior-variance", type=click.FloatRange(min=0, min_open=True), default=1.0)
@click.option(
    "--reinforcement",
    help="Binary weights: scale hidden fields H by this ρ per minibatch (e.g. 1.00005), 'auto', "
    "or 'hidden=…,output=…,start=…,ramp=…'. [default: off]",
)
@click.option(
    "--validation",
    callback=_parse_validation,
    help="Validation images held out of train: a count or a fraction; 0 for none.",
)
@click.option(
    "--select-by",
    type=click.Choice(["probabilistic", "deterministic"]),
    default="probabilistic",
    show_default=True,
    help="Readout whose validation error picks the best epoch (model.npz).",
)
@click.option(
    "--patience", type=click.IntRange(min=1), help="Stop after this many epochs without progress."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run directory. [default: runs/<dataset>-<timestamp>]",
)
@click.option(
    "--resume",
    type=click.Path(file_okay=False, path_type=Path),
    help="Continue the run in this directory from its checkpoint (--epochs may be raised).",
)
@click.option(
    "--checkpoint-every",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds between mid-epoch checkpoints.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.pass_context
def train(ctx: click.Context, **kw) -> None:
    """Train a network and save it, its checkpoints, metrics and plots in a run directory.

    With no options: a binary 64-100-10 network on the bundled 8x8 digits, 10 epochs.
    """
    from .runs import TrainOptions, load_options, train_run

    given = {
        name
        for name in _TRAIN_FIELDS
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    }
    if kw["resume"] is not None:
        if kw["out"] is not None:
            raise click.UsageError("--resume DIR continues DIR; do not also give --out")
        if given - {"epochs"}:
            raise click.UsageError(
                f"--resume uses the run's own options; only --epochs may be given, not "
                f"{', '.join('--' + g.replace('_', '-') for g in sorted(given - {'epochs'}))}"
            )
        out = kw["resume"]
        options = load_options(out)
        if "epochs" in given:
            options.epochs = kw["epochs"]
            options.validate()
    else:
        fields = {k: kw[k] for k in _TRAIN_FIELDS if kw[k] is not None}
        options = TrainOptions(**fields)
        out = kw["out"] or _default_out(options.dataset)

    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo("\nstopping at the next minibatch, saving a checkpoint…", err=True)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    hidden = "-".join(str(h) for h in options.hidden) or "none"
    click.echo(
        f"{'resuming' if kw['resume'] else 'training'} {options.weights} net (hidden {hidden}) on "
        f"{options.dataset} for {options.epochs} epoch{'s' if options.epochs != 1 else ''} → {out}"
    )
    try:
        summary = train_run(
            options,
            out,
            resume=kw["resume"] is not None,
            progress=not kw["quiet"],
            on_epoch=lambda r: click.echo(_epoch_line(r, options.epochs)),
            stop_event=stop,
            checkpoint_every=kw["checkpoint_every"],
        )
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if not summary["finished"]:
        click.echo(
            f"stopped at epoch {summary['epoch'] + 1}, sample {summary['position']}; checkpoint "
            f"saved. Continue with: ebprop train --resume {out}",
            err=True,
        )
        ctx.exit(130)
    s = summary
    click.echo(
        f"done: best epoch {s['best_epoch']}/{s['epochs_run']} (by validation EBP-"
        f"{'P' if options.select_by == 'probabilistic' else 'D'})"
        + (" — stopped early" if s["stopped_early"] else "")
    )
    click.echo(
        f"  test error  EBP-P {_pct(s['test_error_p'])}   EBP-D {_pct(s['test_error_d'])}   "
        f"(val P {_pct(s['val_error_p'])}, D {_pct(s['val_error_d'])})"
    )
    click.echo(
        f"  EBP-P calibration on test: NLL {s['test_nll']:.4f}  Brier {s['test_brier']:.4f}  "
        f"ECE {s['test_ece']:.4f}"
    )
    click.echo(
        f"  {s['n_weights']:,} weights, {s['n_features']} inputs, "
        f"{s['seconds_per_epoch_mean']:.2f} s/epoch; model: {Path(out) / 'model.npz'}"
    )


# ---------------------------------------------------------------------------- evaluate
def _load_split(model, split: str, dataset: str | None, data_dir: str | None):
    """Raw images and labels of ``split`` of the model's dataset, and a checksum warning."""
    from .datasets import load_dataset

    opts = model.metadata.get("training_options") or {}
    name = dataset or opts.get("dataset")
    if not name:
        raise click.UsageError("the model records no dataset; pass --dataset")
    ds = load_dataset(
        name,
        data_dir or opts.get("data_dir"),
        validation=opts.get("validation"),
        seed=opts.get("seed", 0),
    )
    warn = None
    recorded = model.metadata.get("checksums") or {}
    if recorded and dataset is None and recorded != ds.checksums:
        warn = "warning: the data's checksums differ from those recorded at training time"
    X, y = {"train": (ds.X_train, ds.y_train), "val": (ds.X_val, ds.y_val)}.get(
        split, (ds.X_test, ds.y_test)
    )
    if len(y) == 0:
        raise click.UsageError(f"the {split} split is empty for this model's dataset options")
    return X, y, name, warn


def _features(model, images: np.ndarray) -> np.ndarray:
    dtype = model.estimator.dtype
    if model.preprocessor is None:
        return images.reshape(len(images), -1).astype(dtype)
    return model.preprocessor.transform(images, dtype)


def evaluation_report(est, X: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict:
    """Errors of both readouts, per-class error, confusion matrix and EBP-P calibration."""
    from . import metrics

    pred_p = est.predict(X, readout="probabilistic")
    pred_d = est.predict(X, readout="deterministic")
    proba = est.predict_proba(X)
    idx = est._class_indices(y)
    classes = est.classes_
    return {
        "n_samples": int(len(y)),
        "error_p": metrics.error_rate(y, pred_p),
        "error_d": metrics.error_rate(y, pred_d),
        "nll": metrics.negative_log_likelihood(idx, proba),
        "brier": metrics.brier_score(idx, proba),
        "ece": metrics.expected_calibration_error(idx, proba, n_bins),
        "classes": classes.tolist(),
        "per_class_error_p": [
            None if np.isnan(e) else float(e) for e in metrics.per_class_error(y, pred_p, classes)
        ],
        "per_class_error_d": [
            None if np.isnan(e) else float(e) for e in metrics.per_class_error(y, pred_d, classes)
        ],
        "confusion_matrix_p": metrics.confusion_matrix(y, pred_p, classes).tolist(),
    }


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.option(
    "--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True
)
@click.option(
    "--dataset", type=click.Choice(["digits", "mnist", "fashion-mnist"]), help="Override."
)
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option("--bins", type=click.IntRange(min=1), default=15, show_default=True, help="ECE bins.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def evaluate(model_path: Path, split, dataset, data_dir, bins, as_json) -> None:
    """Error of both readouts, per-class error, confusion matrix and calibration of MODEL."""
    from .persist import load_model

    model = load_model(model_path)
    X, y, name, warn = _load_split(model, split, dataset, data_dir)
    if warn:
        click.echo(warn, err=True)
    report = evaluation_report(model.estimator, _features(model, X), y, bins)
    report |= {"model": str(model_path), "dataset": name, "split": split}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{model_path}: {name} {split} split, {report['n_samples']} images")
    click.echo(f"  error  EBP-P {_pct(report['error_p'])}   EBP-D {_pct(report['error_d'])}")
    click.echo(
        f"  EBP-P calibration: NLL {report['nll']:.4f}  Brier {report['brier']:.4f}  "
        f"ECE({bins} bins) {report['ece']:.4f}"
    )
    click.echo("  per-class error (EBP-P / EBP-D):")
    for c, ep, ed in zip(
        report["classes"], report["per_class_error_p"], report["per_class_error_d"], strict=True
    ):
        click.echo(f"    {c!s:>6}  {_pct(ep)}  {_pct(ed)}")
    cm = np.array(report["confusion_matrix_p"])
    w = max(4, len(str(cm.max())) + 1)
    click.echo("  confusion matrix (EBP-P; rows true, columns predicted):")
    click.echo("        " + "".join(f"{c!s:>{w}}" for c in report["classes"]))
    for c, row in zip(report["classes"], cm, strict=True):
        click.echo(f"  {c!s:>6}" + "".join(f"{v:>{w}}" for v in row))


# ---------------------------------------------------------------------------- predict
def _image_to_raw(path: Path, shape: tuple[int, int], max_value: float, invert: str) -> np.ndarray:
    """A PNG/JPEG as a raw training-like image (h, w): grayscale, light digit on dark ground."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            gray = np.asarray(im.convert("L").resize(shape[::-1], Image.Resampling.LANCZOS))
    except UnidentifiedImageError as exc:
        raise ValueError(f"{path}: not an image Pillow can read") from exc
    gray = gray.astype(np.float64) / 255.0
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if invert == "yes" or (invert == "auto" and border.mean() > 0.5):
        gray = 1.0 - gray  # dark ink on a light page → the datasets' light ink on dark
    return np.clip(np.rint(gray * max_value), 0, max_value)


def _npy_to_raw(path: Path, shape: tuple[int, int]) -> np.ndarray:
    arr = np.load(path, allow_pickle=False)
    h, w = shape
    if arr.ndim == 2 and arr.shape == (h, w):
        arr = arr[None]
    elif arr.ndim == 2 and arr.shape[1] == h * w:
        arr = arr.reshape(-1, h, w)
    elif arr.ndim == 1 and arr.shape[0] == h * w:
        arr = arr.reshape(1, h, w)
    if arr.ndim != 3 or arr.shape[1:] != (h, w):
        raise ValueError(
            f"{path}: array of shape {arr.shape}; expected ({h}, {w}), (n, {h}, {w}) or "
            f"(n, {h * w}) raw images"
        )
    return arr


@main.command()
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
    from .persist import load_model

    model = load_model(model_path)
    pre = model.preprocessor
    if pre is None:
        raise ValueError(f"{model_path}: the model has no preprocessor; cannot read images")
    shape, max_value = tuple(pre.image_shape_), pre.max_value_
    names, raws = [], []
    for path in inputs:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        if path.suffix.lower() == ".npy":
            arr = _npy_to_raw(path, shape)
            names += [f"{path}[{i}]" for i in range(len(arr))] if len(arr) > 1 else [str(path)]
            raws.append(arr)
        else:
            names.append(str(path))
            raws.append(_image_to_raw(path, shape, max_value, invert)[None])
    X = _features(model, np.concatenate(raws).astype(np.float64))
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


def model_layers(est) -> list[dict]:
    """Per-layer parameter counts and memory, as trained and as deployed.

    Binary weights deploy as one bit each, every output unit's row of n_in bits padded to whole
    64-bit words; biases (and real weights) deploy as float32. Trained memory is every parameter
    (H and b) at the training dtype.
    """
    binary = est.weights == "binary"
    itemsize = np.dtype(est.dtype).itemsize
    rows = []
    for layer, (h, b) in enumerate(zip(est.coefs_, est.intercepts_, strict=True)):
        n_in, n_out = h.shape
        one_bit = h.size if binary else 0
        full = b.size + (0 if binary else h.size)
        packed = n_out * (-(-n_in // 64)) * 8 if binary else 0
        rows.append(
            {
                "layer": layer,
                "shape": [int(n_in), int(n_out)],
                "params_1bit": int(one_bit),
                "params_32bit": int(full),
                "bytes_trained": int((h.size + b.size) * itemsize),
                "bytes_deployed": int(packed + 4 * full),
            }
        )
    return rows


@main.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(model_path: Path, as_json: bool) -> None:
    """Summarise MODEL: layers, 1-bit and 32-bit parameters, memory trained and deployed."""
    from .persist import load_model

    model = load_model(model_path)
    est, meta = model.estimator, model.metadata
    rows = model_layers(est)
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
            f"  at epoch {m.get('epoch')}: test error EBP-P {_pct(m['test_error_p'])}, "
            f"EBP-D {_pct(m['test_error_d'])}"
        )


from .sweep_cli import report, sweep  # noqa: E402 - registered after main is defined

main.add_command(sweep)
main.add_command(report)

from .packed.commands import bench_inference, export  # noqa: E402 - issue 6: deployment

main.add_command(export)
main.add_command(bench_inference)

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
