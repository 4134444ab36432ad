"""What ``EBPClassifier.fit`` adds around the epochs: BLAS threads, early stopping.

:func:`training_threads` limits BLAS to one thread while training; :func:`validation_split`
and :class:`EarlyStopping` implement scikit-learn's ``early_stopping`` contract (as
``MLPClassifier``'s): a held-out fraction, patience, and the best epoch's parameters restored.
"""

from __future__ import annotations

import contextlib
import numbers
import os
from collections.abc import Iterator, Sequence

import numpy as np

from .core import (
    ConvNetwork,
    Network,
    WeightFamily,
    init_conv_network,
    init_network,
    make_family,
    parse_reinforcement,
)
from .core.architecture import (
    DenseSpec,
    LayerSpec,
    dense_sizes,
    is_convolutional,
    layer_shapes,
    parse_architecture,
)
from .core.convnet import parameter_shapes
from .train import network_from_arrays

__all__ = [
    "READOUTS",
    "EarlyStopping",
    "check_input_scale",
    "build_network",
    "check_parameters",
    "float64_network",
    "conv_layers",
    "conv_network_from_arrays",
    "conv_specs",
    "resolve_input_shape",
    "training_threads",
    "validation_split",
]

#: The two readouts: EBP-P and EBP-D.
READOUTS = ("probabilistic", "deterministic")

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


def validation_split(
    X: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``X_train, X_val, y_train, y_val``: a stratified ``fraction`` (at least one) held out.

    Stratified when every class can be represented on both sides, else a plain random split.
    """
    from sklearn.model_selection import train_test_split

    n_val = max(1, int(round(fraction * len(y))))
    n_classes = len(np.unique(y))
    stratify = y if n_val >= n_classes and len(y) - n_val >= n_classes else None
    try:
        return train_test_split(X, y, test_size=n_val, random_state=seed, stratify=stratify)
    except ValueError:  # a class with a single sample cannot be stratified
        return train_test_split(X, y, test_size=n_val, random_state=seed)


class EarlyStopping:
    """Track the best validation score (higher is better) and a copy of its parameters.

    Parameters
    ----------
    n_iter_no_change : int
        Epochs without a strictly better score before :meth:`update` says stop.
    """

    def __init__(self, n_iter_no_change: int) -> None:
        self.n_iter_no_change = n_iter_no_change
        self.best_score: float | None = None
        self.best: list[np.ndarray] | None = None
        self.since = 0

    def update(self, score: float, arrays: Sequence[np.ndarray]) -> bool:
        """Record an epoch's score (copying ``arrays`` when it is the best); True: stop now."""
        if self.best_score is None or score > self.best_score:
            self.best_score, self.since = score, 0
            self.best = [a.copy() for a in arrays]
            return False
        self.since += 1
        return self.since >= self.n_iter_no_change

    def restore(self, arrays: Sequence[np.ndarray]) -> None:
        """Write the best epoch's values into ``arrays`` in place (the earliest on ties)."""
        for a, b in zip(arrays, self.best or (), strict=bool(self.best)):
            a[...] = b


def check_parameters(est) -> tuple[tuple[int, ...], object]:  # noqa: C901 - a flat list
    """Validate an :class:`~ebprop.EBPClassifier`'s constructor parameters (its ``check_params``).

    Returns
    -------
    (hidden_layer_sizes, reinforcement) : the widths as a tuple of int and the parsed
    reinforcement schedule (None for plain EBP).
    """
    sizes = est.hidden_layer_sizes
    if isinstance(sizes, numbers.Integral):
        sizes = (sizes,)
    sizes = tuple(sizes)
    if not all(isinstance(s, numbers.Integral) and s > 0 for s in sizes):
        raise ValueError(f"hidden_layer_sizes must be positive integers, got {sizes!r}")
    specs = conv_specs(est)
    if specs is not None and dense_sizes(specs) is not None:
        sizes = dense_sizes(specs)  # an all-dense architecture is an MLP
    if est.weights not in ("binary", "real"):
        raise ValueError(f"weights must be 'binary' or 'real', got {est.weights!r}")
    for name in ("early_stopping", "warm_start"):
        if not isinstance(getattr(est, name), bool | np.bool_):
            raise ValueError(f"{name} must be True or False, got {getattr(est, name)!r}")
    f = est.validation_fraction
    if isinstance(f, bool) or not isinstance(f, numbers.Real) or not 0.0 < f < 1.0:
        raise ValueError(f"validation_fraction must be a fraction in (0, 1), got {f!r}")
    for name in ("batch_size", "max_iter", "n_iter_no_change"):
        value = getattr(est, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if est.readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {est.readout!r}")
    p = est.input_dropout
    if p is not None and not (isinstance(p, numbers.Real) and 0.0 < p <= 1.0):
        raise ValueError(f"input_dropout must be a keep probability in (0, 1] or None, got {p!r}")
    for name in ("init_variance", "prior_variance"):
        value = getattr(est, name)
        if not (isinstance(value, numbers.Real) and np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    schedule = parse_reinforcement(est.reinforcement)
    if schedule is not None and est.weights != "binary":
        raise ValueError(
            "reinforcement applies to binary weights only (it polarises P(W = ±1)); "
            f"got weights={est.weights!r}"
        )
    jobs = est.n_jobs
    if jobs is not None and (
        isinstance(jobs, bool) or not isinstance(jobs, numbers.Integral) or jobs < 0
    ):
        raise ValueError(
            f"n_jobs must be None or an integer >= 0 (0: the NumPy loop), got {jobs!r}"
        )
    est.float_dtype()
    return sizes, schedule


def check_input_scale(X: np.ndarray, dtype: np.dtype) -> None:
    """ValueError when ``X`` is so large that EBP's forward pass in ``dtype`` would overflow.

    The first layer sums x² over the features; beyond √(max / (4 n_features)) that sum (or
    Σx² − x²·M²) overflows to inf and the update turns the parameters into NaN.
    """
    bound = float(np.sqrt(np.finfo(dtype).max / (4.0 * max(1, X.shape[1]))))
    largest = float(np.abs(X).max()) if X.size else 0.0
    if largest > bound:
        raise ValueError(
            f"X has values up to {largest:.3g}; EBP's forward pass in {np.dtype(dtype)} needs "
            f"|x| <= {bound:.3g} for {X.shape[1]} features: scale the features first "
            "(e.g. ebprop.datasets.Preprocessor or sklearn's StandardScaler)"
        )


#: ``hidden_layer_sizes``'s default: with ``architecture`` given it must stay at this value.
DEFAULT_HIDDEN = (200,)


def conv_specs(est) -> tuple[LayerSpec, ...] | None:
    """The hidden layers of ``est.architecture`` (None when not given); checks ``input_shape``.

    ValueError (one line, naming the parameter) for a malformed string, for ``architecture``
    given together with a non-default ``hidden_layer_sizes``, or a malformed ``input_shape``.
    """
    shape = getattr(est, "input_shape", None)
    if shape is not None and (
        isinstance(shape, str | bytes)
        or len(tuple(shape)) != 3
        or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in shape
        )  # fmt: skip
    ):
        raise ValueError(f"input_shape must be (height, width, channels) >= 1, got {shape!r}")
    text = getattr(est, "architecture", None)
    if text is None:
        return None
    try:
        specs = parse_architecture(text)
    except ValueError as exc:
        raise ValueError(f"architecture: {exc}") from None
    hidden = est.hidden_layer_sizes
    hidden = (hidden,) if isinstance(hidden, numbers.Integral) else tuple(hidden)
    if hidden != DEFAULT_HIDDEN:
        raise ValueError(
            "give hidden_layer_sizes or architecture, not both "
            f"(architecture={text!r}, hidden_layer_sizes={hidden!r})"
        )
    return specs


def conv_layers(est) -> tuple[LayerSpec, ...] | None:
    """The hidden layer specs when ``est.architecture`` has conv/pool layers, else None."""
    specs = conv_specs(est)
    return specs if specs is not None and is_convolutional(specs) else None


def resolve_input_shape(input_shape, n_features: int) -> tuple[int, int, int]:
    """The (height, width, channels) of the inputs: ``input_shape``, or a square grey image.

    ValueError when ``input_shape`` does not multiply to ``n_features``, or when it is None and
    ``n_features`` is not a perfect square.
    """
    if input_shape is None:
        side = int(round(np.sqrt(n_features)))
        if side * side != n_features:
            raise ValueError(
                f"input_shape: X has {n_features} features, not a square grey image; give "
                "input_shape=(height, width, channels)"
            )
        return (side, side, 1)
    shape = tuple(int(d) for d in input_shape)
    if int(np.prod(shape)) != n_features:
        raise ValueError(
            f"input_shape {shape} has {int(np.prod(shape))} values, X has {n_features} features"
        )
    return shape  # type: ignore[return-value]


def conv_network_from_arrays(
    coefs: Sequence[np.ndarray],
    intercepts: Sequence[np.ndarray],
    family: WeightFamily,
    dtype: np.dtype,
    specs: Sequence[LayerSpec],
    input_shape: tuple[int, int, int],
    n_outputs: int,
) -> ConvNetwork:
    """A :class:`ConvNetwork` over given parameters, checked (layer count, shapes, finiteness).

    ``specs`` are the hidden layers; the output layer of ``n_outputs`` units is added. Arrays of
    ``dtype`` and C-contiguous are shared. ValueError names the layer and the expected shapes.
    """
    specs = (*specs, DenseSpec(n_outputs))
    layer_shapes(specs, input_shape)  # ValueError naming a token that does not fit
    expected = parameter_shapes(specs, input_shape)
    if len(coefs) != len(expected) or len(intercepts) != len(expected):
        raise ValueError(
            f"coefs_/intercepts_ have {len(coefs)}/{len(intercepts)} layers; the architecture "
            f"has {len(expected)}"
        )
    H, b = [], []
    for layer, (c, i, shape) in enumerate(zip(coefs, intercepts, expected, strict=True)):
        c = np.asarray(c, dtype=dtype, order="C")
        i = np.asarray(i, dtype=dtype).reshape(-1)
        if c.shape != shape or i.shape != (shape[1],):
            raise ValueError(
                f"layer {layer}: coefs_ has shape {c.shape} and intercepts_ {i.shape}; "
                f"expected {shape} and {(shape[1],)}"
            )
        if not (np.isfinite(c).all() and np.isfinite(i).all()):
            raise ValueError(f"layer {layer}: coefs_/intercepts_ contain NaN or Inf")
        H.append(c)
        b.append(i)
    return ConvNetwork(family=family, specs=specs, input_shape=tuple(input_shape), H=H, b=b)


def build_network(est, rng: np.random.Generator | None = None) -> Network | ConvNetwork:
    """The network of an :class:`~ebprop.EBPClassifier`: over its ``coefs_``/``intercepts_``
    (checked), or freshly initialised from ``rng`` (needs ``n_features_in_``, ``n_outputs_``).
    """
    sizes, _ = check_parameters(est)
    specs, family = conv_layers(est), make_family(est.weights, est.prior_variance)
    dtype = est.float_dtype()
    shape = None if specs is None else resolve_input_shape(est.input_shape, est.n_features_in_)
    if rng is None and specs is not None:
        return conv_network_from_arrays(
            est.coefs_, est.intercepts_, family, dtype, specs, shape, est.n_outputs_
        )
    if rng is None:
        return network_from_arrays(
            est.coefs_, est.intercepts_, family, dtype, est.n_features_in_, est.n_outputs_
        )
    if specs is not None:
        specs = (*specs, DenseSpec(est.n_outputs_))
        return init_conv_network(specs, shape, family, rng, est.init_variance, dtype)
    sizes = (est.n_features_in_, *sizes, est.n_outputs_)
    return init_network(sizes, family, rng, est.init_variance, dtype)


def float64_network(net: Network | ConvNetwork) -> Network | ConvNetwork:
    """A float64 copy of ``net`` (for EBP-P predictions that do not depend on the batch)."""
    H, b = [h.astype(np.float64) for h in net.H], [c.astype(np.float64) for c in net.b]
    if isinstance(net, ConvNetwork):
        return ConvNetwork(net.family, net.specs, net.input_shape, H, b)
    return Network(family=net.family, H=H, b=b)
