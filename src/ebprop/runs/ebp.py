"""Training runs: the engine behind ``ebprop train`` (and each run of a sweep).

A run directory holds

============== ===============================================================================
options.json   the :class:`TrainOptions` (written first)
checkpoint.npz parameters, RNG state, epoch, position in the epoch, the epoch's sample order and
               the history so far; written at every epoch end, every ``checkpoint_every`` seconds
               mid-epoch, and when a run is stopped
metrics.jsonl  one JSON record per finished epoch
last.npz       the model after the last finished epoch
model.npz      the best model so far by validation error of the ``select_by`` readout
*.png          learning curves, confusion matrix, reliability diagram, |tanh H| histograms
summary.json   written last, only when the run has finished (a sweep's "done" marker)
============== ===============================================================================

Every file is written atomically. A resumed run replays exactly what an uninterrupted one does:
the only randomness after initialisation is the per-epoch sample order, drawn from one
``numpy.random.Generator`` whose state is checkpointed, and evaluation never touches it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from . import metrics, plots
from ._version import __version__
from .core import diverged, dropout_nu, parse_reinforcement
from .estimator import DIVERGED_MESSAGE
from .exceptions import ModelFormatError
from .persist import (
    atomic_savez,
    atomic_write_text,
    decode_header,
    encode_header,
    init_estimator,
    load_model,
    save_model,
)
from .train import encode_targets, epoch_order, run_minibatches_inplace

__all__ = [
    "CHECKPOINT_VERSION",
    "TrainOptions",
    "load_options",
    "load_summary",
    "train_run",
]

CHECKPOINT_VERSION = 1
_SELECT_BY = ("probabilistic", "deterministic")
_SUFFIX = {"probabilistic": "p", "deterministic": "d"}
#: on_batch(epoch, position, n_errors_this_epoch) -> True to stop at this minibatch boundary.
BatchHook = Callable[[int, int, int], "bool | None"]


@dataclass
class TrainOptions:
    """Everything that defines a training run (data, preprocessing, network, schedule).

    ``epochs`` may be raised when resuming; every other field must match the run's.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    hidden: tuple[int, ...] = (100,)
    weights: str = "binary"
    epochs: int = 10
    batch_size: int = 10
    input_dropout: float | None = None
    filters: str | None = None
    scaling: str = "unit"
    deskew: bool = False
    seed: int = 0
    dtype: str = "float32"
    init_variance: float = 1.0
    prior_variance: float = 1.0
    reinforcement: float | str | None = None
    validation: int | float | None = None
    select_by: str = "probabilistic"
    patience: int | None = None
    extra: dict = field(default_factory=dict)  # free-form labels (a sweep's grid point, ...)

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in np.atleast_1d(self.hidden)) if self.hidden else ()
        if self.data_dir is not None:
            self.data_dir = str(self.data_dir)
        self.validate()

    def validate(self) -> None:
        """Check the fields a run needs before it loads any data; ValueError names the field."""

        def positive_int(name: str, value: Any) -> None:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        positive_int("epochs", self.epochs)
        positive_int("batch_size", self.batch_size)
        for h in self.hidden:
            positive_int("hidden layer width", h)
        if self.patience is not None:
            positive_int("patience", self.patience)
        if self.weights not in ("binary", "real"):
            raise ValueError(f"weights must be 'binary' or 'real', got {self.weights!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.select_by not in _SELECT_BY:
            raise ValueError(f"select_by must be one of {_SELECT_BY}, got {self.select_by!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        p = self.input_dropout
        if p is not None and not (0.0 < p <= 1.0):
            raise ValueError(f"input_dropout must be a keep probability in (0, 1], got {p!r}")
        if parse_reinforcement(self.reinforcement) is not None and self.weights != "binary":
            raise ValueError("reinforcement applies to binary weights only")

    def to_dict(self) -> dict:
        """JSON-able dict (``hidden`` as a list)."""
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainOptions:
        """Inverse of :meth:`to_dict`; unknown keys are refused (ValueError naming them)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training options {unknown}; known: {sorted(known)}")
        return cls(**d)

    def estimator_params(self) -> dict:
        """Constructor parameters of the :class:`EBPClassifier` this run trains."""
        return {
            "hidden_layer_sizes": list(self.hidden),
            "weights": self.weights,
            "batch_size": int(self.batch_size),
            "max_iter": int(self.epochs),
            "input_dropout": self.input_dropout,
            "init_variance": float(self.init_variance),
            "prior_variance": float(self.prior_variance),
            "reinforcement": self.reinforcement,
            "random_state": int(self.seed),
            "dtype": self.dtype,
        }


def load_options(run_dir: str | Path) -> TrainOptions:
    """The options of the run in ``run_dir`` (its ``options.json``)."""
    path = Path(run_dir) / "options.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; {run_dir} is not a run directory")
    return TrainOptions.from_dict(json.loads(path.read_text()))


def load_summary(run_dir: str | Path) -> dict | None:
    """The run's ``summary.json``, or None when the run has not finished."""
    path = Path(run_dir) / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


# ---------------------------------------------------------------------------- data
@dataclass
class _Data:
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: np.ndarray
    checksums: dict
    preprocessor: Any


def _load_data(options: TrainOptions) -> _Data:
    from .datasets import Preprocessor, load_dataset

    ds = load_dataset(
        options.dataset, options.data_dir, validation=options.validation, seed=options.seed
    )
    pre = Preprocessor(scaling=options.scaling, filters=options.filters, deskew=options.deskew)
    pre.fit(ds.X_train, ds.max_value)
    dt = np.dtype(options.dtype)
    return _Data(
        X_train=pre.transform(ds.X_train, dt),
        y_train=ds.y_train,
        X_val=pre.transform(ds.X_val, dt) if len(ds.y_val) else np.empty((0, pre.n_features_), dt),
        y_val=ds.y_val,
        X_test=pre.transform(ds.X_test, dt),
        y_test=ds.y_test,
        classes=np.asarray(ds.classes),
        checksums=dict(ds.checksums),
        preprocessor=pre,
    )


# ---------------------------------------------------------------------------- checkpoints
@dataclass
class _State:
    epoch: int = 0  # finished epochs
    position: int = 0  # samples of the current epoch already trained on
    n_errors: int = 0  # online errors in the current epoch so far
    seconds: float = 0.0  # training seconds spent in the current epoch so far
    order: np.ndarray | None = None  # the current epoch's sample order (None between epochs)
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_error: float | None = None


def _save_checkpoint(
    path: Path, est, rng: np.random.Generator, state: _State, options: TrainOptions, data: _Data
) -> None:
    header = {
        "format": "ebprop.checkpoint",
        "version": CHECKPOINT_VERSION,
        "ebprop_version": __version__,
        "options": options.to_dict(),
        "epoch": state.epoch,
        "position": state.position,
        "n_errors": state.n_errors,
        "seconds": state.seconds,
        "rng_state": rng.bit_generator.state,
        "history": state.history,
        "best_epoch": state.best_epoch,
        "best_error": state.best_error,
        "checksums": data.checksums,
        "n_train": int(data.y_train.shape[0]),
        "n_layers": len(est.coefs_),
    }
    arrays = {f"coef_{i}": h for i, h in enumerate(est.coefs_)}
    arrays |= {f"intercept_{i}": b for i, b in enumerate(est.intercepts_)}
    order = state.order if state.order is not None else np.empty(0, np.int64)
    atomic_savez(path, header=encode_header(header), order=order.astype(np.int64), **arrays)


def _load_checkpoint(path: Path, est, rng: np.random.Generator, data: _Data) -> _State:
    src = str(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # noqa: BLE001 - any read failure means an unusable checkpoint
        raise ModelFormatError(f"{src}: unreadable checkpoint ({exc})") from exc
    if "header" not in arrays:
        raise ModelFormatError(f"{src}: not an ebprop checkpoint (no header)")
    h = decode_header(arrays["header"], src)
    if h.get("format") != "ebprop.checkpoint" or h.get("version") != CHECKPOINT_VERSION:
        raise ModelFormatError(
            f"{src}: unsupported checkpoint (format {h.get('format')!r}, version "
            f"{h.get('version')!r}; this ebprop reads version {CHECKPOINT_VERSION})"
        )
    if h["checksums"] != data.checksums or h["n_train"] != data.y_train.shape[0]:
        raise ModelFormatError(
            f"{src}: the data changed since the run started (checksums or training-set size "
            "differ); resume with the same data"
        )
    n_layers = len(est.coefs_)
    if h["n_layers"] != n_layers:
        raise ModelFormatError(f"{src}: {h['n_layers']} layers, the options give {n_layers}")
    for i in range(n_layers):
        for name, target in ((f"coef_{i}", est.coefs_[i]), (f"intercept_{i}", est.intercepts_[i])):
            a = arrays.get(name)
            if a is None or a.shape != target.shape or not np.isfinite(a).all():
                raise ModelFormatError(f"{src}: array {name!r} is missing, misshapen or non-finite")
            target[...] = a
    order = arrays.get("order")
    if order is None or order.size not in (0, h["n_train"]):
        raise ModelFormatError(f"{src}: sample order has the wrong length")
    rng.bit_generator.state = h["rng_state"]
    return _State(
        epoch=int(h["epoch"]),
        position=int(h["position"]),
        n_errors=int(h["n_errors"]),
        seconds=float(h["seconds"]),
        order=order if order.size else None,
        history=list(h["history"]),
        best_epoch=int(h["best_epoch"]),
        best_error=h["best_error"],
    )


# ---------------------------------------------------------------------------- the run
def _evaluate(est, X: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    if y.shape[0] == 0:
        return {"p": None, "d": None}
    return {s: metrics.error_rate(y, est.predict(X, readout=r)) for r, s in _SUFFIX.items()}


def _check_resumable(out_dir: Path, options: TrainOptions | None) -> TrainOptions:
    stored = load_options(out_dir)
    if options is None:
        return stored
    mine, theirs = options.to_dict(), stored.to_dict()
    differ = sorted(k for k in mine if k != "epochs" and mine[k] != theirs[k])
    if differ:
        raise ValueError(
            f"{out_dir}: options {differ} differ from the run's options.json; resume with the "
            "run's options (only epochs may change)"
        )
    return options


def train_run(
    options: TrainOptions | None,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    stop_event: threading.Event | None = None,
    on_batch: BatchHook | None = None,
    checkpoint_every: float | None = 30.0,
    make_plots: bool = True,
) -> dict:
    """Train (or resume) a run in ``out_dir`` and return its summary.

    Parameters
    ----------
    options : TrainOptions or None
        None only with ``resume=True`` (the run's ``options.json`` is used). When resuming,
        ``epochs`` may be larger than the run's to train on.
    resume : bool
        Continue from ``checkpoint.npz``; the parameters end up identical to those of an
        uninterrupted run.
    progress : bool
        Show a tqdm bar per epoch (images/s, running online error).
    on_epoch : callable, optional
        Called with each epoch's metrics record once it is saved.
    stop_event : threading.Event, optional
        When set, the run stops at the next minibatch boundary after saving a checkpoint.
    on_batch : callable, optional
        ``on_batch(epoch, position, n_errors)`` after each minibatch (epoch counts from 1);
        returning True stops like ``stop_event``.
    checkpoint_every : float or None
        Seconds between mid-epoch checkpoints (0: after every minibatch; None: only at epoch
        ends and on stop).
    make_plots : bool
        Draw the PNG figures when the run finishes (about a second; sweeps may skip them).

    Returns
    -------
    dict
        The summary (also in ``summary.json``) with ``"finished": True``; when stopped early by
        ``stop_event``/``on_batch``: ``{"finished": False, "epoch", "position", "out_dir"}``.

    Raises
    ------
    FileExistsError
        If ``out_dir`` already holds a run and ``resume`` is False.
    """
    out_dir = Path(out_dir)
    if resume:
        options = _check_resumable(out_dir, options)
        finished = load_summary(out_dir)
        if finished is not None and finished["epochs_run"] >= options.epochs:
            return finished
        if finished is not None and finished.get("stopped_early"):
            return finished
    else:
        if options is None:
            raise ValueError("options are required unless resuming")
        if (out_dir / "options.json").exists() or (out_dir / "checkpoint.npz").exists():
            raise FileExistsError(
                f"{out_dir} already holds a run; resume it (ebprop train --resume {out_dir}) "
                "or choose another --out"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "options.json", json.dumps(options.to_dict(), indent=2) + "\n")

    data = _load_data(options)
    rng = np.random.default_rng(options.seed)
    est = init_estimator(options.estimator_params(), data.X_train.shape[1], data.classes, rng)
    ckpt_path = out_dir / "checkpoint.npz"
    state = _State()
    if resume and ckpt_path.exists():
        state = _load_checkpoint(ckpt_path, est, rng, data)
        (out_dir / "summary.json").unlink(missing_ok=True)  # epochs were raised: not done yet
    net = est._network()
    est.coefs_, est.intercepts_ = net.H, net.b
    Y = encode_targets(est._class_indices(data.y_train), est.n_outputs_, net.dtype)
    nu = dropout_nu(options.input_dropout)
    n = data.y_train.shape[0]
    stop = stop_event or threading.Event()
    model_meta = {"training_options": options.to_dict(), "checksums": data.checksums}

    def checkpoint() -> None:
        _save_checkpoint(ckpt_path, est, rng, state, options, data)

    stopped_early = False
    while state.epoch < options.epochs:
        if state.order is None:
            state.order = epoch_order(n, rng, shuffle=True)
            state.position = state.n_errors = 0
            state.seconds = 0.0
        epoch = state.epoch + 1
        bar = tqdm(
            total=n,
            initial=state.position,
            desc=f"epoch {epoch}/{options.epochs}",
            unit="img",
            disable=not progress,
            leave=False,
            dynamic_ncols=True,
        )
        base_errors, base_pos = state.n_errors, state.position
        last_ckpt = time.perf_counter()

        def batch_done(pos: int, errs: int, bar=bar, base_errors=base_errors, epoch=epoch) -> bool:
            nonlocal last_ckpt
            total = base_errors + errs
            bar.update(pos - bar.n)
            bar.set_postfix(err=f"{total / pos:.3f}", refresh=False)
            if on_batch is not None and on_batch(epoch, pos, total):
                stop.set()
            if stop.is_set():
                return True
            now = time.perf_counter()
            if checkpoint_every is not None and now - last_ckpt >= checkpoint_every and pos < n:
                state.position, state.n_errors = pos, total
                state.seconds += now - last_ckpt
                last_ckpt = now
                checkpoint()
            return False

        try:
            pos, errs = run_minibatches_inplace(
                net, data.X_train, Y, state.order, options.batch_size, nu,
                start=base_pos, on_batch=batch_done,
                reinforcement=parse_reinforcement(options.reinforcement), epoch=state.epoch,
            )  # fmt: skip
        finally:
            bar.close()
        state.seconds += time.perf_counter() - last_ckpt
        state.position, state.n_errors = pos, base_errors + errs
        if pos < n:  # stopped mid-epoch
            checkpoint()
            return {
                "finished": False,
                "epoch": state.epoch,
                "position": pos,
                "out_dir": str(out_dir),
            }

        if not all(np.isfinite(a).all() for a in (*net.H, *net.b)):
            raise FloatingPointError(
                f"training diverged in epoch {epoch}: parameters became NaN or infinite "
                f"(try binary weights, a smaller --prior-variance, or wider layers); the "
                f"checkpoint of the last good state is kept in {ckpt_path}"
            )
        if diverged(net):
            warnings.warn(
                DIVERGED_MESSAGE.format(epoch=epoch, bs=options.batch_size),
                RuntimeWarning,
                stacklevel=2,
            )
        t_eval = time.perf_counter()
        val, test = _evaluate(est, data.X_val, data.y_val), _evaluate(est, data.X_test, data.y_test)
        record = {
            "epoch": epoch,
            "train_error": state.n_errors / n,
            "val_error_p": val["p"],
            "val_error_d": val["d"],
            "test_error_p": test["p"],
            "test_error_d": test["d"],
            "seconds": state.seconds,
            "samples_per_s": n / state.seconds if state.seconds > 0 else None,
            "eval_seconds": time.perf_counter() - t_eval,
        }
        state.history.append(record)
        state.epoch = epoch
        state.order = None
        state.position = state.n_errors = 0
        save_model(out_dir / "last.npz", est, data.preprocessor, {**model_meta, "metrics": record})
        score = val[_SUFFIX[options.select_by]]
        if score is None or state.best_error is None or score < state.best_error:
            # Without a validation split the last epoch is kept.
            state.best_epoch, state.best_error = epoch, score
            save_model(
                out_dir / "model.npz", est, data.preprocessor, {**model_meta, "metrics": record}
            )
        atomic_write_text(
            out_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in state.history)
        )
        checkpoint()
        if on_epoch is not None:
            on_epoch(record)
        if options.patience is not None and epoch - state.best_epoch >= options.patience:
            stopped_early = True
            break
        if stop.is_set() and state.epoch < options.epochs:
            return {"finished": False, "epoch": state.epoch, "position": 0, "out_dir": str(out_dir)}

    return _finish(out_dir, options, data, state, stopped_early, make_plots)


def _finish(
    out_dir: Path,
    options: TrainOptions,
    data: _Data,
    state: _State,
    stopped_early: bool,
    make_plots: bool = True,
) -> dict:
    """Final metrics and plots of the chosen model, then ``summary.json`` (last)."""
    best = load_model(out_dir / "model.npz")
    est = best.estimator
    idx = est._class_indices(data.y_test)
    proba = est.predict_proba(data.X_test)
    pred_p = est.predict(data.X_test, readout="probabilistic")
    rec = state.history[state.best_epoch - 1]
    last = state.history[-1]
    seconds = [r["seconds"] for r in state.history]
    if make_plots:
        plots.learning_curves(state.history, out_dir / "learning_curves.png")
        plots.confusion_matrix_plot(
            metrics.confusion_matrix(data.y_test, pred_p, est.classes_),
            est.classes_,
            out_dir / "confusion_matrix.png",
        )
        plots.reliability_diagram(
            metrics.reliability_curve(idx, proba, 15), out_dir / "reliability.png"
        )
        if options.weights == "binary":
            plots.confidence_histograms(est.coefs_, out_dir / "confidence_hist.png")
    summary = {
        "finished": True,
        "ebprop_version": __version__,
        "options": options.to_dict(),
        "select_by": options.select_by,
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "stopped_early": stopped_early,
        "val_error_p": rec["val_error_p"],
        "val_error_d": rec["val_error_d"],
        "test_error_p": rec["test_error_p"],
        "test_error_d": rec["test_error_d"],
        "last_test_error_p": last["test_error_p"],
        "last_test_error_d": last["test_error_d"],
        "test_nll": metrics.negative_log_likelihood(idx, proba),
        "test_brier": metrics.brier_score(idx, proba),
        "test_ece": metrics.expected_calibration_error(idx, proba, 15),
        "seconds_per_epoch_mean": float(np.mean(seconds)),
        "seconds_total": float(np.sum(seconds)),
        "n_weights": int(sum(c.size for c in est.coefs_)),
        "n_biases": int(sum(b.size for b in est.intercepts_)),
        "n_features": int(est.n_features_in_),
        "n_train": int(data.y_train.shape[0]),
        "n_val": int(data.y_val.shape[0]),
        "n_test": int(data.y_test.shape[0]),
        "checksums": data.checksums,
        "out_dir": str(out_dir),
    }
    summary = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in summary.items()
    }
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
