"""Backpropagation and BinaryConnect multilayer perceptrons in PyTorch, and their training runs.

This module imports torch at the top; :mod:`ebprop.baselines` imports it only when a baseline
is built, so that ``import ebprop`` never needs torch.

BinaryConnect (Courbariaux, Bengio & David 2015, deterministic variant):

- every layer keeps real "shadow" weights W; the forward and backward passes use
  W_b = sign(W) (+1 for W >= 0), scaled by the constant 1/sqrt(fan_in);
- the gradient with respect to W_b is applied to W unchanged (straight-through estimator);
- after each Adam step W is clipped to [-1, 1]; biases stay real and unclipped;
- batch normalisation after every linear layer, the output included (as the paper did); the
  deployed network uses sign(W) (see :meth:`MLP.deployed_weights`).

Departures from the paper, on purpose: softmax cross-entropy instead of the squared hinge loss
(so that every method shares one loss), no per-layer learning-rate scaling by the Glorot range, and
a constant learning rate unless ``lr_decay`` is set.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ebprop.baselines.options import BaselineOptions
from ebprop.baselines.rundir import (
    append_jsonl,
    atomic_write_text,
    read_json,
    read_jsonl,
    write_json,
)
from ebprop.exceptions import ModelFormatError
from ebprop.persist import atomic_savez, decode_header, encode_header

__all__ = ["MLP", "load_baseline_data", "train_baseline"]

_CHECKPOINT_VERSION = 1


def _sign(w: torch.Tensor) -> torch.Tensor:
    """Deterministic binarisation: +1 where w >= 0, -1 elsewhere (sign(0) = +1)."""
    return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)


class _BinaryLinear(nn.Linear):
    """Linear layer computing with sign(W) / sqrt(fan_in); gradients pass straight through to W."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        wb = w + (_sign(w) - w).detach()  # value sign(w), gradient d/dw = identity
        return F.linear(x, wb, self.bias) / math.sqrt(self.in_features)


class MLP(nn.Module):
    """Fully connected classifier.

    [dropout] → (linear → [batch norm] → activation → [dropout])* → linear [→ batch norm, BC].

    Parameters
    ----------
    n_in, n_out : int
        Input features and classes.
    options : BaselineOptions
        Architecture (``hidden``, ``activation``, dropouts, ``batch_norm``) and ``method``.
    """

    def __init__(self, n_in: int, n_out: int, options: BaselineOptions) -> None:
        super().__init__()
        self.binary = options.method == "binaryconnect"
        linear = _BinaryLinear if self.binary else nn.Linear
        widths = [n_in, *options.hidden, n_out]
        self.linears = nn.ModuleList(
            linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        n_norm = len(widths) - 1 if self.binary else len(widths) - 2
        self.norms = nn.ModuleList(
            nn.BatchNorm1d(w) for w in widths[1 : 1 + n_norm] if options.batch_norm
        )
        self.activation = torch.relu if options.activation == "relu" else torch.tanh
        self.input_drop = nn.Dropout(1.0 - (options.input_dropout or 1.0))
        self.hidden_drop = nn.Dropout(1.0 - (options.hidden_dropout or 1.0))
        if self.binary:
            for lin in self.linears:  # Glorot-uniform shadow weights, well inside [-1, 1]
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (n, n_out) from features (n, n_in)."""
        h = self.input_drop(x)
        last = len(self.linears) - 1
        for i, lin in enumerate(self.linears):
            h = lin(h)
            if i < len(self.norms):
                h = self.norms[i](h)
            if i < last:
                h = self.hidden_drop(self.activation(h))
        return h

    def clip_inplace(self) -> None:
        """BinaryConnect: clip the shadow weights to [-1, 1] (no-op for backpropagation)."""
        if self.binary:
            with torch.no_grad():
                for lin in self.linears:
                    lin.weight.clamp_(-1.0, 1.0)

    def deployed_weights(self) -> list[np.ndarray]:
        """The weight matrices the trained network computes with, each (n_out, n_in).

        BinaryConnect: sign(W) in {-1, +1} (the 1/sqrt(fan_in) scale is a per-layer constant
        folded into the next batch normalisation). Backpropagation: W itself.
        """
        with torch.no_grad():
            return [
                (_sign(lin.weight) if self.binary else lin.weight).cpu().numpy().copy()
                for lin in self.linears
            ]

    def n_weights(self) -> int:
        """Entries of the weight matrices (biases and batch-norm parameters not counted)."""
        return sum(lin.weight.numel() for lin in self.linears)

    def n_biases(self) -> int:
        """Biases of the linear layers."""
        return sum(lin.bias.numel() for lin in self.linears)


def load_baseline_data(options: BaselineOptions) -> dict[str, Any]:
    """Features and class indices for train, validation and test, exactly as an EBP run gets them.

    The loading, split and preprocessing (fitted on the training images) are those of
    :mod:`ebprop.runs`, so that baselines and EBP see identical inputs.

    Returns
    -------
    dict
        ``X_train``, ``X_val``, ``X_test``: (n, n_features) float arrays; ``y_train``, ``y_val``,
        ``y_test``: (n,) class indices 0..n_classes-1; ``n_classes``.
    """
    from ebprop.runs import _load_data  # the one place that turns options into features

    data = _load_data(options)  # duck-typed: reads dataset, split and preprocessing fields only
    out: dict[str, Any] = {"n_classes": len(data.classes)}
    for part in ("train", "val", "test"):
        out[f"X_{part}"] = getattr(data, f"X_{part}")
        out[f"y_{part}"] = np.searchsorted(data.classes, getattr(data, f"y_{part}")).astype(
            np.int64
        )
    return out


def _error(model: MLP, X: torch.Tensor, y: torch.Tensor, chunk: int = 10_000) -> float | None:
    """Fraction misclassified by the network in eval mode; None for an empty set."""
    if len(y) == 0:
        return None
    model.eval()
    wrong = 0
    with torch.no_grad():
        for start in range(0, len(y), chunk):
            pred = model(X[start : start + chunk]).argmax(dim=1)
            wrong += int((pred != y[start : start + chunk]).sum())
    return wrong / len(y)


def _save_checkpoint(path: Path, model: MLP, opt: torch.optim.Adam, state: dict) -> None:
    arrays: dict[str, np.ndarray] = {}
    for name, t in model.state_dict().items():
        arrays[f"model/{name}"] = t.detach().cpu().numpy()
    params = list(model.parameters())
    for i, p in enumerate(params):
        for key, value in opt.state.get(p, {}).items():
            arrays[f"adam/{i}/{key}"] = torch.as_tensor(value).detach().cpu().numpy()
    arrays["meta"] = encode_header({"version": _CHECKPOINT_VERSION, **state})
    atomic_savez(path, **arrays)


def _load_checkpoint(path: Path, model: MLP, opt: torch.optim.Adam) -> dict:
    with np.load(path, allow_pickle=False) as z:
        meta = decode_header(z["meta"], str(path))
        if meta.get("version") != _CHECKPOINT_VERSION:
            raise ModelFormatError(
                f"{path}: unsupported checkpoint version {meta.get('version')!r}"
            )
        model.load_state_dict(
            {k[len("model/") :]: torch.from_numpy(z[k]) for k in z.files if k.startswith("model/")}
        )
        params = list(model.parameters())
        for i, p in enumerate(params):
            keys = [k for k in z.files if k.startswith(f"adam/{i}/")]
            if keys:
                opt.state[p] = {k.split("/")[-1]: torch.from_numpy(z[k].copy()) for k in keys}
    return meta


def _selected(history: list[dict]) -> dict | None:
    """The epoch with the lowest validation error (the earliest on ties); the last without one."""
    if not history:
        return None
    if history[0].get("val_error") is None:
        return history[-1]
    return min(history, key=lambda r: (r["val_error"], r["epoch"]))


def train_baseline(
    options: BaselineOptions,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = False,
    on_epoch: Callable[[dict], Any] | None = None,
    stop_event: threading.Event | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Train a backpropagation or BinaryConnect baseline into a run directory.

    The run directory gets ``options.json``, ``checkpoint.npz`` (after every epoch; no pickle),
    ``metrics.jsonl`` (one line per epoch: ``epoch``, ``train_loss``, ``train_error``,
    ``val_error``, ``test_error``, ``seconds``) and, once finished, ``summary.json``.

    Parameters
    ----------
    options : BaselineOptions
    out_dir : path
        Run directory (created).
    resume : bool
        Continue from ``checkpoint.npz`` when present (the options must match ``options.json``
        except ``epochs``, which may be raised); without it an existing ``options.json`` is an
        error.
    progress : bool
        Show a tqdm bar over epochs.
    on_epoch : callable, optional
        Called with each epoch's metrics record.
    stop_event : threading.Event, optional
        When set, stop after the current epoch (checkpointed, no summary).
    threads : int, optional
        ``torch.set_num_threads(threads)`` for this process (None leaves torch's setting). Use 1
        when several runs share the machine: oversubscribed threads slow small nets ~30x.

    Returns
    -------
    dict
        The summary (also ``summary.json``): ``best_epoch``, ``val_error``, ``test_error``,
        ``readouts`` ({"BP" or "BC": {"val_error", "test_error"}}), ``seconds_per_epoch``,
        ``n_weights``, ``epochs_run``, ``stopped_early``; or, when stopped by ``stop_event``,
        the same keys for the epochs so far with ``finished`` False.
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    opts_path, ckpt_path = out / "options.json", out / "checkpoint.npz"
    metrics_path, summary_path = out / "metrics.jsonl", out / "summary.json"
    if opts_path.exists():
        if not resume:
            raise FileExistsError(f"{out} already holds a run; pass resume=True to continue it")
        mine = options.to_dict()
        theirs = BaselineOptions.from_dict(read_json(opts_path)).to_dict()
        differ = sorted(k for k in mine if k != "epochs" and mine[k] != theirs[k])
        if differ:
            raise ValueError(
                f"{out}: options {differ} differ from the run's options.json; resume with the "
                "run's options (only epochs may change)"
            )
        done = read_json(summary_path) if summary_path.exists() else None
        if done is not None and (done["epochs_run"] >= options.epochs or done["stopped_early"]):
            return done
        summary_path.unlink(missing_ok=True)  # epochs were raised: not done yet
    write_json(opts_path, options.to_dict())

    if threads is not None:
        torch.set_num_threads(threads)
    data = load_baseline_data(options)
    dtype = torch.float64 if options.dtype == "float64" else torch.float32
    X = {p: torch.from_numpy(data[f"X_{p}"]).to(dtype) for p in ("train", "val", "test")}
    y = {p: torch.from_numpy(data[f"y_{p}"]) for p in ("train", "val", "test")}
    torch.manual_seed(options.seed)
    model = MLP(X["train"].shape[1], data["n_classes"], options).to(dtype)
    opt = torch.optim.Adam(model.parameters(), lr=options.learning_rate)

    history: list[dict] = []
    start_epoch = 0
    if resume and ckpt_path.exists():
        meta = _load_checkpoint(ckpt_path, model, opt)
        start_epoch = int(meta["epoch"])
        # metrics may hold one epoch more than the checkpoint if a crash fell between the two
        history = [r for r in read_jsonl(metrics_path) if r["epoch"] <= start_epoch]
        atomic_write_text(
            metrics_path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in history)
        )
    elif metrics_path.exists():
        metrics_path.unlink()

    def summary(finished: bool, stopped_early: bool) -> dict[str, Any]:
        best = _selected(history)
        readout = "BC" if options.method == "binaryconnect" else "BP"
        seconds = [r["seconds"] for r in history]
        return {
            "method": options.method,
            "options": options.to_dict(),
            "finished": finished,
            "best_epoch": best and best["epoch"],
            "train_error": best and best["train_error"],
            "val_error": best and best["val_error"],
            "test_error": best and best["test_error"],
            "readouts": {
                readout: {
                    "val_error": best and best["val_error"],
                    "test_error": best and best["test_error"],
                }
            },
            "epochs_run": len(history),
            "stopped_early": stopped_early,
            "seconds_per_epoch_mean": float(np.mean(seconds)) if seconds else None,
            "seconds_total": float(np.sum(seconds)),
            "n_weights": model.n_weights(),
            "n_biases": model.n_biases(),
            "n_features": int(X["train"].shape[1]),
        }

    def patience_exhausted() -> bool:
        best = _selected(history)
        return (
            options.patience is not None
            and best is not None
            and best.get("val_error") is not None
            and history[-1]["epoch"] - best["epoch"] >= options.patience
        )

    n = len(y["train"])
    bar = tqdm(
        total=options.epochs,
        initial=start_epoch,
        disable=not progress,
        desc=f"{options.method}",
        unit="epoch",
    )
    stopped_early = patience_exhausted()
    epoch = start_epoch
    while epoch < options.epochs and not stopped_early:
        if stop_event is not None and stop_event.is_set():
            bar.close()
            return summary(finished=False, stopped_early=False)
        epoch += 1
        t0 = time.perf_counter()
        # per-epoch seeds: a resumed run draws the same order and dropout masks as an unbroken one
        order = torch.from_numpy(np.random.default_rng([options.seed, epoch]).permutation(n))
        torch.manual_seed(options.seed * 1_000_003 + epoch)
        for group in opt.param_groups:
            group["lr"] = options.learning_rate * options.lr_decay ** (epoch - 1)
        model.train()
        loss_sum, wrong = 0.0, 0
        for start in range(0, n, options.batch_size):
            idx = order[start : start + options.batch_size]
            if options.batch_norm and len(idx) < 2:
                continue  # batch norm cannot train on a single sample
            logits = model(X["train"][idx])
            loss = F.cross_entropy(logits, y["train"][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.clip_inplace()
            loss_sum += float(loss.detach()) * len(idx)
            wrong += int((logits.argmax(dim=1) != y["train"][idx]).sum())
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / n,
            "train_error": wrong / n,  # on the fly, with dropout, as the weights moved
            "val_error": _error(model, X["val"], y["val"]),
            "test_error": _error(model, X["test"], y["test"]),
            "seconds": time.perf_counter() - t0,
        }
        history.append(record)
        append_jsonl(metrics_path, record)
        best = _selected(history)
        _save_checkpoint(ckpt_path, model, opt, {"epoch": epoch, "best_epoch": best["epoch"]})
        bar.update(1)
        bar.set_postfix(val=record["val_error"], test=record["test_error"])
        if on_epoch is not None:
            on_epoch(record)
        stopped_early = patience_exhausted()
    bar.close()
    result = summary(finished=True, stopped_early=stopped_early)
    write_json(summary_path, result)
    return result
