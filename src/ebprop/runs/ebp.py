"""EBP training runs: the engine behind ``ebprop train`` (and each EBP run of a sweep).

Besides the files of :mod:`ebprop.runs.folder`, an EBP run directory holds

============== ===============================================================================
checkpoint.npz parameters, RNG state, epoch, position in the epoch, the epoch's sample order and
               the history so far; written at every epoch end, every ``checkpoint_every`` seconds
               mid-epoch, and when a run is stopped
last.npz       the model after the last finished epoch
model.npz      the best model so far by validation error of the ``select_by`` readout
model_p.npz    the best model so far by EBP-P validation error (what probabilities should use)
model_d.npz    the best model so far by EBP-D validation error (what ``ebprop export`` should ship)
*.png          learning curves, confusion matrix, reliability diagram, |tanh H| histograms
============== ===============================================================================

A resumed run replays exactly what an uninterrupted one does: the only randomness after
initialisation is the per-epoch sample order, drawn from one ``numpy.random.Generator`` whose
state is checkpointed, and evaluation never touches it. Everything is checked (options, data,
network) before the first file is written, so a run that fails on a bad option leaves no folder
in the way of the corrected retry.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import metrics, plots
from .._version import __version__
from ..core import start_schedule
from ..estimator import EBPClassifier
from ..exceptions import ModelFormatError
from ..persist import load_model, save_model
from ..trainer import Trainer, describe_engine, training_threads
from .data import (
    Features,
    check_features,
    conv_input_shape,
    epoch_train_features,
    load_features,
)
from .folder import RunFolder, best_record, patience_exhausted, summary_record
from .options import REFIT_SAMPLES, TrainOptions

__all__ = ["CHECKPOINT_VERSION", "load_options", "load_summary", "train_run"]

CHECKPOINT_VERSION = 1
_SUFFIX = {"probabilistic": "p", "deterministic": "d"}
_READOUT_NAMES = {"p": "EBP-P", "d": "EBP-D"}
#: Minibatches between the runner's own checks (progress bar, checkpoint clock, stop event):
#: the fused loop returns to Python once per check (~15–25 µs each, plus tqdm's ~20 µs), which
#: cost 784-200-10 about a quarter of its speed when it happened after every minibatch.
CALLBACK_EVERY = 16
#: on_batch(epoch, position, n_errors_this_epoch) -> True to stop at this minibatch boundary.
BatchHook = Callable[[int, int, int], "bool | None"]


def load_options(run_dir: str | Path) -> TrainOptions:
    """The options of the EBP run in ``run_dir`` (its ``options.json``)."""
    return RunFolder(run_dir).read_options(TrainOptions)


def load_summary(run_dir: str | Path) -> dict | None:
    """The run's ``summary.json``, or None when the run has not finished."""
    return RunFolder(run_dir).read_summary()


# ---------------------------------------------------------------------------- checkpoints
def _input_shape(options: TrainOptions, data: Features) -> dict:
    """``{"input_shape": (h, w, c)}`` for an architecture with conv layers, else ``{}``."""
    shape = conv_input_shape(options, data)
    return {} if shape is None else {"input_shape": shape}


def _save_checkpoint(
    folder: RunFolder,
    trainer: Trainer,
    seconds: float,
    history: list[dict],
    options: TrainOptions,
    data: Features,
) -> None:
    net = trainer.net
    best = best_record(history, "val_error_" + _SUFFIX[options.select_by])
    mid_epoch = trainer.order is not None
    header = {
        "format": "ebprop.checkpoint",
        "version": CHECKPOINT_VERSION,
        "ebprop_version": __version__,
        "options": options.to_dict(),
        "epoch": trainer.epoch,
        "position": trainer.position if mid_epoch else 0,
        "n_errors": trainer.n_errors if mid_epoch else 0,
        "seconds": seconds if mid_epoch else 0.0,
        "rng_state": trainer.rng.bit_generator.state,
        "history": history,
        "best_epoch": best["epoch"] if best else 0,
        "best_error": best and best.get("val_error_" + _SUFFIX[options.select_by]),
        "checksums": data.checksums,
        "n_train": int(data.y_train.shape[0]),
        "n_layers": len(net.H),
    }
    arrays = {f"coef_{i}": h for i, h in enumerate(net.H)}
    arrays |= {f"intercept_{i}": b for i, b in enumerate(net.b)}
    precisions = getattr(net, "bias_precision", None)  # conv_bias_step="precision"
    arrays |= {f"bias_precision_{i}": t for i, t in enumerate(precisions or [])}
    order = trainer.order if mid_epoch else np.empty(0, np.int64)
    arrays["order"] = order.astype(np.int64)
    folder.save_checkpoint(header, arrays, key="header")


def _load_checkpoint(folder: RunFolder, trainer: Trainer, data: Features) -> tuple[float, list]:
    """Restore ``trainer`` in place; returns (seconds spent in the epoch so far, history)."""
    src = str(folder.checkpoint_path)
    h, arrays = folder.read_checkpoint(key="header")
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
    net = trainer.net
    if h["n_layers"] != len(net.H):
        raise ModelFormatError(f"{src}: {h['n_layers']} layers, the options give {len(net.H)}")
    precisions = getattr(net, "bias_precision", None)
    for i in range(len(net.H)):
        targets = [(f"coef_{i}", net.H[i]), (f"intercept_{i}", net.b[i])]
        if precisions is not None:
            targets.append((f"bias_precision_{i}", precisions[i]))
        for name, target in targets:
            a = arrays.get(name)
            if a is None or a.shape != target.shape or not np.isfinite(a).all():
                raise ModelFormatError(f"{src}: array {name!r} is missing, misshapen or non-finite")
            target[...] = a
    for layer in range(len(net.H)):
        net.refresh_moments_inplace(layer)  # M, M² follow the restored H
    order = arrays.get("order")
    if order is None or order.size not in (0, h["n_train"]):
        raise ModelFormatError(f"{src}: sample order has the wrong length")
    trainer.rng.bit_generator.state = h["rng_state"]
    trainer.epoch = int(h["epoch"])
    trainer.order = order if order.size else None
    trainer.position = int(h["position"]) if order.size else 0
    trainer.n_errors = int(h["n_errors"]) if order.size else 0
    return float(h["seconds"]), list(h["history"])


# ---------------------------------------------------------------------------- the run
def _evaluate(est: EBPClassifier, X: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    if y.shape[0] == 0:
        return {"p": None, "d": None}
    return {s: metrics.error_rate(y, est.predict(X, readout=r)) for r, s in _SUFFIX.items()}


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
    on_start: Callable[[str], None] | None = None,
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
        When set, the run stops at a minibatch boundary, within ``CALLBACK_EVERY`` minibatches
        (after every one when ``on_batch`` is given), after saving a checkpoint.
    on_batch : callable, optional
        ``on_batch(epoch, position, n_errors)`` after each minibatch (epoch counts from 1);
        returning True stops like ``stop_event``.
    checkpoint_every : float or None
        Seconds between mid-epoch checkpoints (0: after every minibatch; None: only at epoch
        ends and on stop). Without ``on_batch``, and unless it is 0, the clock is read every
        ``CALLBACK_EVERY`` minibatches.
    make_plots : bool
        Draw the PNG figures when the run finishes (about a second; sweeps may skip them).
    on_start : callable, optional
        Called once the data is loaded, before training, with the engine that will train
        (:func:`ebprop.trainer.describe_engine`: the compiled loop with its vector width and
        threads, or the NumPy loop and why).

    Returns
    -------
    dict
        The summary (also in ``summary.json``) with ``"finished": True``; when stopped early by
        ``stop_event``/``on_batch``: ``{"finished": False, "epoch", "position", "out_dir"}``.

    Raises
    ------
    FileExistsError
        If ``out_dir`` already holds a run and ``resume`` is False, or is a non-empty folder
        that holds no run.
    RunFolderBusyError
        If another process is training into ``out_dir`` (:meth:`RunFolder.claim`).
    """
    folder = RunFolder(out_dir)
    with folder.claim():
        return _train_claimed(
            folder, options, resume, progress, on_epoch, stop_event, on_batch,
            checkpoint_every, make_plots, on_start,
        )  # fmt: skip


def _train_claimed(
    folder: RunFolder,
    options: TrainOptions | None,
    resume: bool,
    progress: bool,
    on_epoch: Callable[[dict], None] | None,
    stop_event: threading.Event | None,
    on_batch: BatchHook | None,
    checkpoint_every: float | None,
    make_plots: bool,
    on_start: Callable[[str], None] | None = None,
) -> dict:
    """:func:`train_run` in a folder whose lock this process holds."""
    out_dir = folder.path
    options, finished = folder.check_start(options, TrainOptions, resume)
    if finished is not None:
        return finished
    # Everything that can fail on a bad option or missing data happens before the first write.
    data = load_features(options, keep_train_images=options.augment_shift > 0)
    check_features(data, options)
    # 'auto' becomes an explicit schedule for this budget before options.json is written, so a
    # resumed run keeps it (a folder that stored 'auto' itself keeps its 20 plain epochs)
    schedule = start_schedule(
        options.reinforcement, options.epochs, len(data.y_train), options.batch_size, not resume
    )
    options = dataclasses.replace(options, reinforcement=schedule)
    rng = np.random.default_rng(options.seed)
    est = EBPClassifier(**options.estimator_params(), **_input_shape(options, data))
    est.init_parameters(data.X_train.shape[1], data.classes, rng)
    trainer = est.trainer()
    seconds, history = 0.0, []
    if resume and folder.checkpoint_path.exists():
        seconds, history = _load_checkpoint(folder, trainer, data)
    folder.begin(options)

    Y = est.coding.targets(data.y_train, trainer.net.dtype)
    n = data.y_train.shape[0]
    if on_start is not None:
        on_start(describe_engine(trainer.net, n, trainer.n_jobs))
    stop = stop_event or threading.Event()
    model_meta = {
        "training_options": options.to_dict(),
        "checksums": data.checksums,
        "class_names": list(data.class_names),
        "input": data.appearance,
    }
    key = "val_error_" + _SUFFIX[options.select_by]

    stopped_early = False
    # The progress bar, the checkpoint clock and the stop event need not see every minibatch;
    # a caller's on_batch (and checkpoint_every=0) is promised each one.
    every = 1 if on_batch is not None or checkpoint_every == 0 else CALLBACK_EVERY
    while trainer.epoch < options.epochs:
        if trainer.order is None:
            seconds = 0.0
        epoch = trainer.epoch + 1
        bar = tqdm(
            total=n,
            initial=trainer.position if trainer.order is not None else 0,
            desc=f"epoch {epoch}/{options.epochs}",
            unit="img",
            disable=not progress,
            leave=False,
            dynamic_ncols=True,
        )
        last_ckpt = time.perf_counter()
        # CPU seconds of this epoch's training (the process's, all its threads): the one-core
        # time on a shared machine; None for an epoch resumed mid-way (its first part is lost)
        cpu0 = None if trainer.order is not None and trainer.position else time.process_time()

        def batch_done(pos: int, total: int, bar=bar, epoch=epoch) -> bool:
            nonlocal last_ckpt, seconds
            bar.update(pos - bar.n)
            bar.set_postfix(err=f"{total / pos:.3f}", refresh=False)
            if on_batch is not None and on_batch(epoch, pos, total):
                stop.set()
            if stop.is_set():
                return True
            now = time.perf_counter()
            if checkpoint_every is not None and now - last_ckpt >= checkpoint_every and pos < n:
                trainer.position, trainer.n_errors = pos, total
                seconds += now - last_ckpt
                last_ckpt = now
                _save_checkpoint(folder, trainer, seconds, history, options, data)
            return False

        X_epoch = epoch_train_features(data, options.augment_shift, options.seed, epoch)
        try:
            with training_threads():
                completed = trainer.train_epoch(
                    X_epoch, Y, batch_done, check_finite=True, callback_every=every
                )
        except FloatingPointError as exc:
            if folder.checkpoint_path.exists():
                where = f"the checkpoint of the last good state is kept in {folder.checkpoint_path}"
            else:  # nothing worth keeping: the corrected command may use the same --out
                folder.discard_unstarted()
                where = f"nothing was kept, so the corrected command can use {out_dir} again"
            raise FloatingPointError(f"{exc}; {where}") from None
        finally:
            bar.close()
        seconds += time.perf_counter() - last_ckpt
        cpu_seconds = None if cpu0 is None else time.process_time() - cpu0
        if not completed:  # stopped mid-epoch
            _save_checkpoint(folder, trainer, seconds, history, options, data)
            return {
                "finished": False,
                "epoch": trainer.epoch,
                "position": trainer.position,
                "out_dir": str(out_dir),
            }

        est.n_iter_ = trainer.epoch
        t_eval = time.perf_counter()
        if options.refit_thresholds:
            est.refit_deterministic(data.X_train[:REFIT_SAMPLES])
        val, test = _evaluate(est, data.X_val, data.y_val), _evaluate(est, data.X_test, data.y_test)
        record = {
            "epoch": epoch,
            "train_error": trainer.n_errors / n,
            "val_error_p": val["p"],
            "val_error_d": val["d"],
            "test_error_p": test["p"],
            "test_error_d": test["d"],
            "seconds": seconds,
            "samples_per_s": n / seconds if seconds > 0 else None,
            "cpu_seconds": cpu_seconds,
            "eval_seconds": time.perf_counter() - t_eval,
        }
        history.append(record)
        meta = {**model_meta, "metrics": record}
        save_model(out_dir / "last.npz", est, data.preprocessor, meta)
        if best_record(history, key) is record:
            save_model(out_dir / "model.npz", est, data.preprocessor, meta)
        for s in _SUFFIX.values():  # the best model of each readout, whichever selects
            if best_record(history, f"val_error_{s}") is record:
                save_model(out_dir / f"model_{s}.npz", est, data.preprocessor, meta)
        folder.write_metrics(history)
        _save_checkpoint(folder, trainer, seconds, history, options, data)
        if on_epoch is not None:
            on_epoch(record)
        if patience_exhausted(history, key, options.patience):
            stopped_early = True
            break
        if stop.is_set() and trainer.epoch < options.epochs:
            return {
                "finished": False,
                "epoch": trainer.epoch,
                "position": 0,
                "out_dir": str(out_dir),
            }

    return _finish(folder, options, data, history, stopped_early, make_plots)


def _finish(
    folder: RunFolder,
    options: TrainOptions,
    data: Features,
    history: list[dict],
    stopped_early: bool,
    make_plots: bool = True,
) -> dict:
    """Final metrics and plots of the chosen model, then ``summary.json`` (last)."""
    out_dir = folder.path
    best = load_model(out_dir / "model.npz")
    est = best.estimator
    idx = est.coding.indices(data.y_test)
    proba = est.predict_proba(data.X_test)
    pred_p = est.predict(data.X_test, readout="probabilistic")
    rec = best_record(history, "val_error_" + _SUFFIX[options.select_by])
    last = history[-1]
    if make_plots:
        plots.learning_curves(history, out_dir / "learning_curves.png")
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
    readouts = {
        name: {"val_error": rec[f"val_error_{s}"], "test_error": rec[f"test_error_{s}"]}
        for s, name in _READOUT_NAMES.items()
    }
    # Each readout's own best epoch and its model file (they differ when the readouts trade off).
    models = {}
    for s, name in _READOUT_NAMES.items():
        best_s = best_record(history, f"val_error_{s}")
        file = out_dir / f"model_{s}.npz"
        models[name] = {
            # Absent for a run started before ebprop kept both models and resumed since.
            "file": file.name if file.is_file() else None,
            "epoch": best_s["epoch"],
            "val_error": best_s[f"val_error_{s}"],
            "test_error": best_s[f"test_error_{s}"],
        }
    summary = summary_record(
        "ebp",
        options,
        history,
        rec,
        readouts,
        stopped_early,
        select_by=options.select_by,
        models=models,
        val_error_p=rec["val_error_p"],
        val_error_d=rec["val_error_d"],
        test_error_p=rec["test_error_p"],
        test_error_d=rec["test_error_d"],
        last_test_error_p=last["test_error_p"],
        last_test_error_d=last["test_error_d"],
        test_nll=metrics.negative_log_likelihood(idx, proba),
        test_brier=metrics.brier_score(idx, proba),
        test_ece=metrics.expected_calibration_error(idx, proba, 15),
        n_weights=int(sum(c.size for c in est.coefs_)),
        bytes_deployed=int(sum(r["bytes_deployed"] for r in metrics.model_memory(est))),
        n_biases=int(sum(b.size for b in est.intercepts_)),
        n_features=int(est.n_features_in_),
        n_train=int(data.y_train.shape[0]),
        n_val=int(data.y_val.shape[0]),
        n_test=int(data.y_test.shape[0]),
        checksums=data.checksums,
        out_dir=str(out_dir),
    )
    folder.write_summary(summary)
    return summary
