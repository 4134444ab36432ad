"""The one training engine: label coding, epochs and minibatches over
:func:`ebprop.core.step_inplace`, and the checkpointable :class:`Trainer`. No I/O, no printing.

Both :class:`ebprop.EBPClassifier` (``fit``/``partial_fit``) and the run loop of
:mod:`ebprop.runs` drive a :class:`Trainer`. It walks a sample order in minibatches, reports
progress through a callback, and can stop and start at any minibatch boundary, so that a run can
be checkpointed mid-epoch and resumed exactly.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from . import kernels
from .core import (
    PARAMETER_BOUND,
    ConvNetwork,
    Network,
    Reinforcement,
    conv_step_inplace,
    diverged,
    step_inplace,
)
from .core.convnet import LayerForward
from .core.forward import layer_forward
from .exceptions import DivergenceWarning

__all__ = [
    "DIVERGED_MESSAGE",
    "DivergenceWarning",
    "LabelCoding",
    "Trainer",
    "decode_outputs",
    "encode_targets",
    "epoch_order",
    "factors_at",
    "minibatch_factors",
    "n_outputs",
    "run_minibatches_inplace",
    "training_threads",
]

#: ``on_batch(position, n_errors_so_far)`` is called after each minibatch; return True to stop.
BatchCallback = Callable[[int, int], "bool | None"]

DIVERGED_MESSAGE = (
    "epoch {epoch}: EBP's summed minibatch update diverged (parameters reached the bound "
    f"±{PARAMETER_BOUND:g}); predictions are unreliable. Use a smaller batch size than {{bs}} "
    "or wider layers (the update overshoots when a unit's variance σ²c is below the batch size)."
)


#: Environment variables that, when set, leave the BLAS thread count to the user.
THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def training_threads() -> Iterator[None]:
    """One BLAS thread while training, unless the user set a thread count in the environment.

    EBP's products are small (a minibatch of 10 rows times one layer), so BLAS threads cost
    more in synchronisation than they gain, and spin against other processes on a shared
    machine: one thread trained 6–270x faster than OpenBLAS's default on the 2-core development
    machine under load (docs/performance.md). Prediction keeps the default.
    """
    if any(os.environ.get(v) for v in THREAD_ENV):
        yield
        return
    from threadpoolctl import threadpool_limits  # scikit-learn's dependency

    with threadpool_limits(limits=1, user_api="blas"):
        yield


# ---------------------------------------------------------------------------- label coding
def n_outputs(n_classes: int) -> int:
    """Output units for ``n_classes`` classes: one unit (its sign) for two, else one per class."""
    return 1 if n_classes == 2 else n_classes


def encode_targets(indices: np.ndarray, n_outputs: int, dtype: np.dtype | type) -> np.ndarray:
    """±1 targets, shape (n, n_outputs), from class indices (n,).

    One output unit (two classes): +1 for class index 1, −1 for index 0. Otherwise one-hot as ±1.
    """
    if n_outputs == 1:
        return (2.0 * indices - 1.0).astype(dtype)[:, None]
    Y = np.full((indices.shape[0], n_outputs), -1.0, dtype=dtype)
    Y[np.arange(indices.shape[0]), indices] = 1.0
    return Y


def decode_outputs(outputs: np.ndarray) -> np.ndarray:
    """Class indices (n,) from output units (n, n_L): argmax, or the sign for one unit."""
    if outputs.shape[1] == 1:
        return (outputs[:, 0] >= 0).astype(np.intp)
    return outputs.argmax(axis=1)


@dataclass(frozen=True)
class LabelCoding:
    """Classes → class indices → ±1 targets of the output units, and back.

    Attributes
    ----------
    classes : (n_classes,) sorted class labels.
    """

    classes: np.ndarray

    @property
    def n_outputs(self) -> int:
        """Output units of the network (see :func:`n_outputs`)."""
        return n_outputs(self.classes.shape[0])

    def indices(self, y: np.ndarray) -> np.ndarray:
        """Class indices (n,) of labels ``y`` (n,); ValueError names labels not in ``classes``."""
        y = np.asarray(y)
        idx = np.searchsorted(self.classes, y)
        idx = np.clip(idx, 0, self.classes.shape[0] - 1)
        unseen = self.classes[idx] != y
        if unseen.any():
            raise ValueError(
                f"y contains labels not in classes_ {self.classes.tolist()}: "
                f"{np.unique(y[unseen]).tolist()}"
            )
        return idx

    def targets(self, y: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
        """±1 targets (n, n_outputs) of labels ``y`` (n,)."""
        return encode_targets(self.indices(y), self.n_outputs, dtype)

    def labels(self, outputs: np.ndarray) -> np.ndarray:
        """Class labels (n,) from output units (n, n_outputs)."""
        return self.classes[decode_outputs(outputs)]


# ---------------------------------------------------------------------------- minibatches
def epoch_order(n_samples: int, rng: np.random.Generator, shuffle: bool = True) -> np.ndarray:
    """The sample order of one epoch: a fresh permutation, or 0..n−1 when not shuffling."""
    return rng.permutation(n_samples) if shuffle else np.arange(n_samples)


#: Work per epoch (samples × weights) from which ``n_jobs=None`` picks the fused compiled loop.
#: That loop runs an MNIST 784-500-500-10 epoch (3.2e10) 2.4–3.1× faster than the NumPy loop but
#: pays a one-off compile (29–37 s, then cached on disk; ~1 s to load per process), which a small
#: job never earns back: the bundled digits (1,437 × 7,400 = 1e7) train an epoch in 0.05 s.
FUSED_MIN_WORK = 1e9


def uses_fused_loop(net: Network, n_samples: int, n_jobs: int | str | None) -> bool:
    """Whether :func:`run_minibatches_inplace` runs the fused kernels for this call.

    ``n_jobs``: None or ``"auto"`` — when the kernels can run here (:func:`kernels.available`)
    and the epoch is large (:data:`FUSED_MIN_WORK`); 0 — never (the NumPy loop, the reference
    definition); k ≥ 1 — with k threads when the kernels can run here.
    """
    return engine_reason(net, n_samples, n_jobs) is None


def engine_reason(net: Network, n_samples: int, n_jobs: int | str | None) -> str | None:
    """None when the fused kernels run (:func:`uses_fused_loop`), else why the NumPy loop does."""
    if n_jobs == 0:
        return "n_jobs=0 asks for it"
    if isinstance(net, ConvNetwork):
        compiled = conv_layer_stats(net, n_jobs) is not layer_forward
        return "conv networks train in the NumPy core" + (
            ", with compiled unit statistics" if compiled else " (no fused conv kernels)"
        )
    reason = kernels.unavailable_reason()
    if reason is not None:
        return reason
    if n_jobs in (None, "auto") and n_samples * sum(h.size for h in net.H) < FUSED_MIN_WORK:
        return (
            f"an epoch of {n_samples} samples is too small to earn back the compiled loop's "
            "one-off compile"
        )
    if not kernels.supports(net):  # imports numba
        missing = kernels.unimplemented_options(net)  # a network option the kernels lack
        if missing:
            changed = ", ".join(sorted(missing))
            return f"the compiled loop implements {changed} at its default only"
        return "the compiled loop supports binary and real weights in float32 and float64 only"
    return None


def conv_layer_stats(net: ConvNetwork, n_jobs: int | str | None) -> LayerForward:
    """What the conv step computes its unit statistics with: the compiled
    ``kernels.conv_layer_forward`` for float32 where the kernels run (and ``n_jobs`` is not 0),
    else the NumPy core's :func:`~ebprop.core.forward.layer_forward`."""
    if n_jobs == 0 or net.dtype != np.float32 or kernels.unavailable_reason() is not None:
        return layer_forward
    return kernels.conv_layer_forward  # imports numba


def describe_engine(net: Network, n_samples: int, n_jobs: int | str | None) -> str:
    """One line naming the loop that trains ``net``: the compiled loop with its vector width and
    threads, or the NumPy loop and why (``ebprop train``'s first line)."""
    reason = engine_reason(net, n_samples, n_jobs)
    if reason is not None:
        return f"engine: the NumPy loop ({reason})"
    if n_jobs == "auto":
        most = kernels.max_threads()
        threads = (
            "1 or 2 threads, measured as it runs (--jobs auto)" if most > 1
            else "1 thread (one CPU free)"
        )  # fmt: skip
    else:
        threads = f"{n_jobs or 1} thread{'s' if (n_jobs or 1) > 1 else ''}"
    return f"engine: the compiled loop, {kernels.vector_bits()}-bit vectors, {threads}"


def factors_at(
    schedule: Reinforcement | None, n_layers: int, progress: float, peak: bool = False
) -> tuple[float, ...] | None:
    """ρ_l of each of ``n_layers`` layers at ``progress`` epochs into training, or None (plain
    EBP: no multiplication). ``peak``: the schedule's full factors once it has begun, even after
    its stop (:meth:`ebprop.core.Reinforcement.peak_factors`, for the divergence check). The one
    place the training loop reads the schedule; what it hands on are these numbers."""
    if schedule is None:
        return None
    if peak:
        return schedule.peak_factors(n_layers, progress)
    return schedule.factors(n_layers, progress)


def minibatch_factors(
    schedule: Reinforcement | None,
    n_layers: int,
    epoch: int,
    order_size: int,
    start: int,
    batch_size: int,
) -> np.ndarray | None:
    """ρ_l of every minibatch from ``start`` to the end of an epoch of ``order_size`` samples
    (``epoch`` finished before it), as the fused kernels take them: ``(minibatches, n_layers)``
    float64, 1.0 where the schedule is off; None without a schedule."""
    if schedule is None:
        return None
    positions = range(start, order_size, batch_size)
    rho = np.ones((len(positions), n_layers))
    for k, position in enumerate(positions):
        factors = factors_at(schedule, n_layers, epoch + position / order_size)
        if factors is not None:
            rho[k] = factors
    return rho


def run_minibatches_inplace(
    net: Network,
    X: np.ndarray,
    Y: np.ndarray,
    order: np.ndarray,
    batch_size: int,
    nu: float = 0.0,
    start: int = 0,
    on_batch: BatchCallback | None = None,
    reinforcement: Reinforcement | None = None,
    epoch: int = 0,
    n_jobs: int | str | None = None,
    callback_every: int = 1,
) -> tuple[int, int]:
    """Train ``net`` on ``X[order[start:]]`` in minibatches, in place.

    Parameters
    ----------
    X : (n, n_0) inputs in ``net.dtype``; Y : (n, n_L) ±1 targets.
    order : (n,) sample indices for this epoch; start : position in ``order`` to resume from.
    on_batch : called after every ``callback_every``-th minibatch of the call and after its last
        one, with (position, errors so far); return True to stop there.
    reinforcement : schedule of the factors ρ_l (None: plain EBP); ``epoch`` (finished epochs
        before this one) and the position in ``order`` give its progress.
    n_jobs : None, 0, a thread count or ``"auto"`` (or a :class:`ebprop.kernels.ThreadChooser`
        that keeps its measurements between calls): which loop runs (:func:`uses_fused_loop`)
        and on how many threads; ``"auto"`` picks one or two as it runs. The fused
        kernels (:mod:`ebprop.kernels`) agree with this NumPy loop to float round-off
        (tests/test_kernels.py); each is bit-identical to itself on resume.
    callback_every : minibatches between ``on_batch`` calls (1: after each). Larger values save
        the fused loop a return to Python per minibatch (progress bars, checkpoints by time).

    Returns
    -------
    (position, n_errors) : where training stopped (``len(order)`` when the epoch is complete) and
    the online EBP-P training errors (prediction before each update) since ``start``.
    """
    chooser = n_jobs if not isinstance(n_jobs, int | str | None) else None
    if uses_fused_loop(net, order.shape[0], "auto" if chooser else n_jobs):  # the whole epoch's
        rho = minibatch_factors(reinforcement, len(net.H), epoch, order.shape[0], start, batch_size)
        return kernels.run_minibatches_fused(  # imports numba
            net, X, Y, order, batch_size, nu, start, on_batch, rho, chooser or n_jobs or 1,
            callback_every,
        )  # fmt: skip
    if callback_every < 1:
        raise ValueError(f"callback_every must be ≥ 1, got {callback_every}")
    labels = decode_outputs(Y)
    if isinstance(net, ConvNetwork):
        step = functools.partial(conv_step_inplace, layer_stats=conv_layer_stats(net, n_jobs))
    else:
        step = step_inplace
    n_errors = done = 0
    position = start
    n = order.shape[0]
    while position < n:
        idx = order[position : position + batch_size]
        rho = factors_at(reinforcement, len(net.H), epoch + position / n)
        out = step(net, X[idx], Y[idx], nu, rho)
        n_errors += int(np.count_nonzero(decode_outputs(out) != labels[idx]))
        position += idx.shape[0]
        done += 1
        due = done % callback_every == 0 or position >= n
        if on_batch is not None and due and on_batch(position, n_errors):
            break
    return position, n_errors


# ---------------------------------------------------------------------------- the trainer
@dataclass
class Trainer:
    """The checkpointable state of EBP training and the epoch loop over it.

    Attributes
    ----------
    net : Network, trained in place.
    rng : numpy.random.Generator
        Draws each epoch's sample order (the only randomness after initialisation).
    batch_size : int; nu : float, input-dropout variance factor ν; shuffle : bool.
    reinforcement : Reinforcement or None.
    epoch : int, finished epochs.
    position : int, samples of the current epoch already trained on.
    n_errors : int, online EBP-P errors in the current epoch so far.
    order : (n,) int array or None, the current epoch's sample order (None between epochs).
    n_jobs : int, "auto" or None, which minibatch loop runs (see :func:`uses_fused_loop`).
    """

    net: Network
    rng: np.random.Generator
    batch_size: int
    nu: float = 0.0
    reinforcement: Reinforcement | None = None
    shuffle: bool = True
    epoch: int = 0
    position: int = 0
    n_errors: int = 0
    order: np.ndarray | None = None
    n_jobs: int | str | None = None
    _chooser: object = field(default=None, repr=False, compare=False)

    def _threads(self, n_samples: int) -> object:
        # "auto": one ThreadChooser for the whole run, so it measures once and then re-checks
        if self.n_jobs != "auto" or not uses_fused_loop(self.net, n_samples, "auto"):
            return self.n_jobs
        if self._chooser is None:
            self._chooser = kernels.ThreadChooser(kernels.max_threads())
        return self._chooser

    def train_epoch(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        on_batch: BatchCallback | None = None,
        check_finite: bool = False,
        callback_every: int = 1,
    ) -> bool:
        """Train on the rest of the current epoch (a new one when between epochs).

        Parameters
        ----------
        X : (n, n_0) inputs in ``net.dtype``; Y : (n, n_L) ±1 targets.
        on_batch : ``on_batch(position, n_errors)`` with this epoch's totals; True stops.
        check_finite : raise FloatingPointError when the epoch leaves NaN/Inf parameters.
        callback_every : minibatches between ``on_batch`` calls (:func:`run_minibatches_inplace`).

        Returns
        -------
        bool
            True when the epoch was completed (``epoch`` advanced), False when ``on_batch``
            stopped it (``position`` and ``n_errors`` say where).

        Warns
        -----
        DivergenceWarning
            (a RuntimeWarning) when a completed epoch drove parameters to the bound.
        """
        n = X.shape[0]
        if self.order is None:
            self.order = epoch_order(n, self.rng, self.shuffle)
            self.position = self.n_errors = 0
        base = self.n_errors
        hook = None
        if on_batch is not None:

            def hook(pos: int, errs: int) -> bool | None:
                return on_batch(pos, base + errs)

        self.position, errs = run_minibatches_inplace(
            self.net, X, Y, self.order, self.batch_size, self.nu, start=self.position,
            on_batch=hook, reinforcement=self.reinforcement, epoch=self.epoch,
            n_jobs=self._threads(n), callback_every=callback_every,
        )  # fmt: skip
        self.n_errors = base + errs
        if self.position < n:
            return False
        epoch = self.epoch + 1
        if check_finite and not all(np.isfinite(a).all() for a in (*self.net.H, *self.net.b)):
            real = getattr(self.net.family, "means_are_parameters", False)
            advice = (
                "a smaller --prior-variance or --init-variance, binary weights, or wider layers"
                if real
                else "a smaller --init-variance or --batch-size, or inputs scaled to [0, 1]"
            )
            raise FloatingPointError(
                f"training diverged in epoch {epoch}: the {'real' if real else 'binary'}-weight "
                f"network's parameters became NaN or infinite (try {advice})"
            )
        # reinforced binary layers are meant to saturate (core.update.diverged)
        # (also after a schedule's stop: fields grown to the bound stay there)
        if diverged(self.net, factors_at(self.reinforcement, len(self.net.H), epoch, peak=True)):
            warnings.warn(
                DIVERGED_MESSAGE.format(epoch=epoch, bs=self.batch_size),
                DivergenceWarning,
                stacklevel=3,
            )
        self.epoch, self.order = epoch, None
        return True
