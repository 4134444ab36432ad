"""Backpropagation, BinaryConnect and BinaryNet multilayer perceptrons in PyTorch, and their runs.

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

BinaryNet (sign weights *and* activations) is :mod:`ebprop.baselines.binarynet`; it trains in the
same loop, is scored by its test-time sign network and saves ``model.npz`` in EBP's format.
"""

from __future__ import annotations

import dataclasses
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

from ebprop.baselines.binarynet import BinaryNet, pixel_input, save_binarynet
from ebprop.baselines.binarynet_conv import BinaryConvNet
from ebprop.baselines.convnet import ConvNet
from ebprop.baselines.options import BaselineOptions
from ebprop.core.architecture import dense_sizes, is_convolutional, parse_architecture
from ebprop.exceptions import ModelFormatError
from ebprop.persist import deployed_bytes
from ebprop.runs import (
    RunFolder,
    best_record,
    check_features,
    load_features,
    patience_exhausted,
    summary_record,
)
from ebprop.runs.data import conv_input_shape, epoch_train_features

__all__ = ["MLP", "READOUT", "build_model", "train_baseline"]

#: The readout label of each baseline method in summaries and tables.
READOUT = {"bp": "BP", "binaryconnect": "BC", "binarynet": "BNN"}

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
            linear(a, b, bias=options.fit_intercept)
            for a, b in zip(widths[:-1], widths[1:], strict=True)
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
                if lin.bias is not None:
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
        return sum(lin.bias.numel() for lin in self.linears if lin.bias is not None)

    def predict_indices(self, X: torch.Tensor) -> np.ndarray:
        """Class indices (n,) of the network in eval mode (argmax of the logits)."""
        self.eval()
        with torch.no_grad():
            return self(X).argmax(dim=1).numpy()


def build_model(
    n_in: int,
    n_classes: int,
    options: BaselineOptions,
    preprocessor: Any,
    input_shape: tuple[int, int, int] | None = None,
) -> Any:
    """The torch network of a baseline run: :class:`MLP`, a BinaryNet, or for an
    ``architecture`` with conv layers a :class:`ebprop.baselines.convnet.ConvNet` (BinaryNet:
    :class:`ebprop.baselines.binarynet_conv.BinaryConvNet`) on images of ``input_shape``.

    Raises
    ------
    ValueError
        One line: conv layers without an ``input_shape``, or a kernel or pool that does not fit.
    """
    n_out = 1 if options.method == "binarynet" and n_classes == 2 else n_classes
    if options.architecture is not None:
        specs = parse_architecture(options.architecture)
        if is_convolutional(specs):
            return _build_conv(specs, n_out, options, preprocessor, input_shape)
        # dense layers only: the MLP of ``hidden``, as EBP trains "500-500"
        options = dataclasses.replace(options, architecture=None, hidden=dense_sizes(specs))
    if options.method != "binarynet":
        return MLP(n_in, n_out, options)

    return BinaryNet(
        n_in,
        n_out,  # one output unit for two classes, as EBP
        options.hidden,
        batch_norm=options.batch_norm,
        bias=options.fit_intercept,
        pixels=pixel_input(preprocessor),
        input_keep=options.input_dropout,
        hidden_keep=options.hidden_dropout,
        dtype=options.dtype,
    )


def _build_conv(
    specs: Any, n_out: int, options: BaselineOptions, preprocessor: Any, input_shape: Any
) -> Any:
    if input_shape is None:
        raise ValueError(
            f"architecture {options.architecture!r}: conv layers need the images' shape "
            "(height, width, channels); pass input_shape"
        )
    kwargs = {
        "batch_norm": options.batch_norm,
        "bias": options.fit_intercept,
        "input_keep": options.input_dropout,
        "hidden_keep": options.hidden_dropout,
    }
    if options.method != "binarynet":
        return ConvNet(
            input_shape, specs, n_out, method=options.method, activation=options.activation,
            **kwargs,
        )  # fmt: skip
    pixels = pixel_input(preprocessor)
    return BinaryConvNet(input_shape, specs, n_out, pixels=pixels, dtype=options.dtype, **kwargs)


def _error(model: Any, X: torch.Tensor, y: torch.Tensor, chunk: int = 10_000) -> float | None:
    """Fraction misclassified by the deployed network (BinaryNet: the sign network); None for an
    empty set."""
    if len(y) == 0:
        return None
    model.eval()
    predict = model.sign_predict if hasattr(model, "sign_predict") else model.predict_indices
    wrong = 0
    for start in range(0, len(y), chunk):
        pred = predict(X[start : start + chunk])
        wrong += int((pred != y[start : start + chunk].numpy()).sum())
    return wrong / len(y)


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy, or the logistic loss for one output unit (two classes)."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], y.to(logits.dtype))
    return F.cross_entropy(logits, y)


def _save_checkpoint(folder: RunFolder, model: MLP, opt: torch.optim.Adam, state: dict) -> None:
    arrays: dict[str, np.ndarray] = {}
    for name, t in model.state_dict().items():
        arrays[f"model/{name}"] = t.detach().cpu().numpy()
    params = list(model.parameters())
    for i, p in enumerate(params):
        for key, value in opt.state.get(p, {}).items():
            arrays[f"adam/{i}/{key}"] = torch.as_tensor(value).detach().cpu().numpy()
    folder.save_checkpoint({"version": _CHECKPOINT_VERSION, **state}, arrays, key="meta")


def _load_checkpoint(folder: RunFolder, model: MLP, opt: torch.optim.Adam) -> dict:
    meta, z = folder.read_checkpoint(key="meta")
    if meta.get("version") != _CHECKPOINT_VERSION:
        raise ModelFormatError(
            f"{folder.checkpoint_path}: unsupported checkpoint version {meta.get('version')!r}"
        )
    model.load_state_dict(
        {k[len("model/") :]: torch.from_numpy(v) for k, v in z.items() if k.startswith("model/")}
    )
    for i, p in enumerate(model.parameters()):
        keys = [k for k in z if k.startswith(f"adam/{i}/")]
        if keys:
            opt.state[p] = {k.split("/")[-1]: torch.from_numpy(z[k].copy()) for k in keys}
    return meta


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
    """Train a backpropagation, BinaryConnect or BinaryNet baseline into a run directory.

    The run directory gets ``options.json``, ``checkpoint.npz`` (after every epoch; no pickle),
    for BinaryNet on pixels ``model.npz`` (the best epoch's sign network folded into an EBP-D
    model, a CNN for an ``architecture`` with conv layers; none on float features, which have no
    integer first layer, nor for a zero-padded first conv on ``symmetric`` pixels),
    ``metrics.jsonl`` (one line per epoch: ``epoch``, ``train_loss``, ``train_error``,
    ``val_error``, ``test_error``, ``seconds`` (training, the shifted images' preprocessing
    included, evaluation excluded), ``cpu_seconds`` (the same span's process CPU time: the
    one-core time when the machine is shared) and ``eval_seconds``) and, once finished,
    ``summary.json``.

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
        ``readouts`` ({"BP", "BC" or "BNN": {"val_error", "test_error"}}; BinaryNet's errors are
        its test-time sign network's), ``seconds_per_epoch``,
        ``n_weights``, ``epochs_run``, ``stopped_early``; or, when stopped by ``stop_event``,
        the same keys for the epochs so far with ``finished`` False.
    """
    folder = RunFolder(out_dir)
    with folder.claim():  # a second process into the same folder: RunFolderBusyError
        return _train_claimed(
            folder, options, resume, progress, on_epoch, stop_event, threads
        )  # fmt: skip


def _train_claimed(
    folder: RunFolder,
    options: BaselineOptions,
    resume: bool,
    progress: bool,
    on_epoch: Callable[[dict], Any] | None,
    stop_event: threading.Event | None,
    threads: int | None,
) -> dict[str, Any]:
    """:func:`train_baseline` in a folder whose lock this process holds."""
    from tqdm.auto import tqdm

    options, finished = folder.check_start(options, BaselineOptions, resume)
    if finished is not None:
        return finished
    if threads is not None:
        torch.set_num_threads(threads)
    # The features every run gets, loaded before anything is written: bad data fails cleanly.
    data = load_features(options, keep_train_images=options.augment_shift > 0)
    check_features(data, options)  # features EBP/BP cannot use refused; hopeless settings warned
    dtype = torch.float64 if options.dtype == "float64" else torch.float32
    parts = ("train", "val", "test")
    X = {p: torch.from_numpy(getattr(data, f"X_{p}")).to(dtype) for p in parts}
    y = {p: torch.from_numpy(data.class_indices(p)) for p in parts}
    shape = conv_input_shape(options, data)  # conv layers: the images' (h, w, c), as for EBP
    torch.manual_seed(options.seed)
    model = build_model(X["train"].shape[1], len(data.classes), options, data.preprocessor, shape)
    model = model.to(dtype)
    opt = torch.optim.Adam(model.parameters(), lr=options.learning_rate)

    history: list[dict] = []
    start_epoch = 0
    if resume and folder.checkpoint_path.exists():
        meta = _load_checkpoint(folder, model, opt)
        start_epoch = int(meta["epoch"])
        # metrics may hold one epoch more than the checkpoint if a crash fell between the two
        history = [r for r in folder.read_metrics() if r["epoch"] <= start_epoch]
    folder.begin(options)
    folder.write_metrics(history)
    readout = READOUT[options.method]

    def summary(finished: bool, stopped_early: bool) -> dict[str, Any]:
        best = best_record(history, "val_error")
        folded = folder.path / "model.npz"  # BinaryNet's sign network, as exported
        size = {"bytes_deployed": deployed_bytes(folded)} if folded.is_file() else {}
        return summary_record(
            options.method,
            options,
            history,
            best,
            {
                readout: {
                    "val_error": best and best["val_error"],
                    "test_error": best and best["test_error"],
                }
            },
            stopped_early,
            finished=finished,
            train_error=best and best["train_error"],
            val_error=best and best["val_error"],
            test_error=best and best["test_error"],
            n_weights=model.n_weights(),
            n_biases=model.n_biases(),
            n_features=int(X["train"].shape[1]),
            **size,
        )

    n = len(y["train"])
    bar = tqdm(
        total=options.epochs,
        initial=start_epoch,
        disable=not progress,
        desc=f"{options.method}",
        unit="epoch",
    )
    stopped_early = patience_exhausted(history, "val_error", options.patience)
    epoch = start_epoch
    while epoch < options.epochs and not stopped_early:
        if stop_event is not None and stop_event.is_set():
            bar.close()
            return summary(finished=False, stopped_early=False)
        epoch += 1
        t0, cpu0 = time.perf_counter(), time.process_time()
        # per-epoch seeds: a resumed run draws the same order and dropout masks as an unbroken one
        order = torch.from_numpy(np.random.default_rng([options.seed, epoch]).permutation(n))
        torch.manual_seed(options.seed * 1_000_003 + epoch)
        for group in opt.param_groups:
            group["lr"] = options.learning_rate * options.lr_decay ** (epoch - 1)
        # shifted training images (augment_shift), drawn as for EBP runs: same seed, same epoch
        X_train = X["train"]
        if options.augment_shift:
            X_train = torch.from_numpy(
                epoch_train_features(data, options.augment_shift, options.seed, epoch)
            ).to(dtype)
        model.train()
        loss_sum, wrong = 0.0, 0
        for start in range(0, n, options.batch_size):
            idx = order[start : start + options.batch_size]
            if options.batch_norm and len(idx) < 2:
                continue  # batch norm cannot train on a single sample
            logits = model(X_train[idx])
            loss = _loss(logits, y["train"][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.clip_inplace()
            loss_sum += float(loss.detach()) * len(idx)
            pred = logits.argmax(dim=1) if logits.shape[1] > 1 else (logits[:, 0] >= 0).long()
            wrong += int((pred != y["train"][idx]).sum())
        seconds = time.perf_counter() - t0  # training only, as EBP runs count it
        cpu_seconds = time.process_time() - cpu0  # the one-core time on a shared machine
        t_eval = time.perf_counter()
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / n,
            "train_error": wrong / n,  # on the fly, with dropout, as the weights moved
            "val_error": _error(model, X["val"], y["val"]),
            "test_error": _error(model, X["test"], y["test"]),
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
        }
        record["eval_seconds"] = time.perf_counter() - t_eval
        history.append(record)
        folder.write_metrics(history)
        best = best_record(history, "val_error")
        # a BinaryNet on pixels folds into a model file; on float features nothing can be
        # exported (the first layer has no integer threshold), so no model.npz
        if options.method == "binarynet" and best is record and model.pixels is not None:
            save_binarynet(folder.path / "model.npz", model, data, options, record)
        _save_checkpoint(folder, model, opt, {"epoch": epoch, "best_epoch": best["epoch"]})
        bar.update(1)
        bar.set_postfix(val=record["val_error"], test=record["test_error"])
        if on_epoch is not None:
            on_epoch(record)
        stopped_early = patience_exhausted(history, "val_error", options.patience)
    bar.close()
    result = summary(finished=True, stopped_early=stopped_early)
    folder.write_summary(result)
    return result
