"""EBPClassifier: Expectation Backpropagation behind scikit-learn's classifier contract."""

from __future__ import annotations

import numbers
import time
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .core import (
    PARAMETER_BOUND,
    Network,
    class_log_probabilities,
    diverged,
    dropout_nu,
    init_network,
    make_family,
    output_z,
    parse_reinforcement,
    predict_deterministic,
)
from .train import decode_outputs, encode_targets, epoch_order, run_minibatches_inplace

_READOUTS = ("probabilistic", "deterministic")
DIVERGED_MESSAGE = (
    "epoch {epoch}: EBP's summed minibatch update diverged (parameters reached the bound "
    f"±{PARAMETER_BOUND:g}); predictions are unreliable. Use a smaller batch size than {{bs}} "
    "(the update overshoots when a unit's variance σ²c is below the batch size)."
)
_PREDICT_CHUNK = 4096  # rows per forward pass at prediction time: bounds memory on big inputs


class EBPClassifier(ClassifierMixin, BaseEstimator):
    """Fully connected classifier with binary (±1) or real weights, trained by EBP.

    Expectation Backpropagation (Soudry, Hubara & Meir, 2014) keeps a factorised posterior over
    the weights and updates it online, in closed form, from a probabilistic forward pass and a
    backward pass: there is no learning rate. Hidden units are ±1 (sign units).

    Parameters
    ----------
    hidden_layer_sizes : sequence of int, default=(200,)
        Widths of the hidden layers; ``()`` gives a single-layer network.
    weights : {"binary", "real"}, default="binary"
        Binary weights: P(W = +1) = (1 + tanh H)/2. Real weights: Gaussian with mean H and fixed
        variance ``prior_variance``.
    batch_size : int, default=10
        Minibatch size; the update is summed (not averaged) over the minibatch.
    max_iter : int, default=20
        Epochs run by :meth:`fit`.
    readout : {"probabilistic", "deterministic"}, default="probabilistic"
        What :meth:`predict` and :meth:`decision_function` use: EBP-P (the output's posterior
        mean) or EBP-D (the single most probable network, sign weights and sign units).
    input_dropout : float or None, default=None
        Keep probability p of analytic input dropout (the authors used 0.8); None disables it.
        No mask is sampled: the first layer's variance grows by ν = 4p(1 − p).
    init_variance : float, default=1.0
        H is drawn uniformly with variance ``init_variance / n_in``.
    reinforcement : float, str or None, default=None
        Binary weights only. After each minibatch the hidden layers' fields are scaled,
        H ← ρ H + ΔH, so that their posteriors polarise and EBP-D approaches EBP-P. A number is
        ρ per minibatch for the hidden layers; ``"auto"`` the measured schedule
        (:data:`ebprop.core.AUTO_REINFORCEMENT`); ``"hidden=…,output=…,start=…,ramp=…"`` a full
        schedule (see :class:`ebprop.core.Reinforcement`). None (or 1) is plain EBP.
    prior_variance : float, default=1.0
        Variance of real weights (fixed, never updated). Ignored for binary weights.
    shuffle : bool, default=True
        Shuffle the samples every epoch.
    random_state : int, Generator, RandomState or None, default=None
        Seeds initialisation and shuffling.
    dtype : {"float32", "float64"}, default="float32"
        Floating type of parameters and computations.
    verbose : int, default=0
        Print one line per epoch when positive.

    Attributes
    ----------
    coefs_ : list of ndarray, each (n_in, n_out)
        Posterior parameters H_l, in scikit-learn's layout. Setting ``coefs_`` and
        ``intercepts_`` and calling :meth:`partial_fit` continues from those values.
    intercepts_ : list of ndarray, each (n_out,)
        Biases b_l.
    classes_ : ndarray (n_classes,)
    n_iter_ : int
        Epochs run so far.
    n_features_in_ : int
    n_outputs_ : int
        Output units: 1 for two classes, else the number of classes.
    training_error_curve_ : list of float
        Online EBP-P training error of each epoch (predicted before each update).

    Notes
    -----
    ``predict_proba`` always uses the EBP-P output: with z_k = μ_k/σ_k of output unit k,
    P(v_k = +1) = Φ(z_k). For two classes (one unit), P(class 1) = Φ(z). For K classes the
    factorised posterior is conditioned on exactly one unit being +1 (what the targets encode):
    P(k) ∝ Φ(z_k)/Φ(−z_k). Its argmax equals the EBP-P class.
    """

    def __init__(
        self,
        hidden_layer_sizes: Sequence[int] = (200,),
        weights: str = "binary",
        batch_size: int = 10,
        max_iter: int = 20,
        readout: str = "probabilistic",
        input_dropout: float | None = None,
        init_variance: float = 1.0,
        prior_variance: float = 1.0,
        reinforcement: float | str | None = None,
        shuffle: bool = True,
        random_state: int | np.random.Generator | np.random.RandomState | None = None,
        dtype: str = "float32",
        verbose: int = 0,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.weights = weights
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.readout = readout
        self.input_dropout = input_dropout
        self.init_variance = init_variance
        self.prior_variance = prior_variance
        self.reinforcement = reinforcement
        self.shuffle = shuffle
        self.random_state = random_state
        self.dtype = dtype
        self.verbose = verbose

    # ------------------------------------------------------------------ validation
    def _validate_params(self) -> None:  # noqa: C901 - a flat list of checks reads best
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral):
            sizes = (sizes,)
        sizes = tuple(sizes)
        if not all(isinstance(s, numbers.Integral) and s > 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {sizes!r}")
        if self.weights not in ("binary", "real"):
            raise ValueError(f"weights must be 'binary' or 'real', got {self.weights!r}")
        if not isinstance(self.batch_size, numbers.Integral) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not isinstance(self.max_iter, numbers.Integral) or self.max_iter < 1:
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if self.readout not in _READOUTS:
            raise ValueError(f"readout must be one of {_READOUTS}, got {self.readout!r}")
        p = self.input_dropout
        if p is not None and not (isinstance(p, numbers.Real) and 0.0 < p <= 1.0):
            raise ValueError(
                f"input_dropout must be a keep probability in (0, 1] or None, got {p!r}"
            )
        for name in ("init_variance", "prior_variance"):
            value = getattr(self, name)
            if not (isinstance(value, numbers.Real) and np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        schedule = parse_reinforcement(self.reinforcement)
        if schedule is not None and self.weights != "binary":
            raise ValueError(
                "reinforcement applies to binary weights only (it polarises P(W = ±1)); "
                f"got weights={self.weights!r}"
            )
        self._float_dtype()
        self._sizes = sizes
        self._reinforcement = schedule

    def _float_dtype(self) -> np.dtype:
        try:
            dt = np.dtype(self.dtype)
        except TypeError:
            dt = None
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        return dt

    def _check_X(self, X, reset: bool) -> np.ndarray:
        return validate_data(
            self, X, reset=reset, dtype=self._float_dtype(), order="C", ensure_all_finite=True
        )

    # ------------------------------------------------------------------ state
    def _network(self, copy: bool = False) -> Network:
        """A Network over ``coefs_``/``intercepts_`` (shared arrays, so training updates them)."""
        dt = self._float_dtype()
        sizes = [self.n_features_in_] + [c.shape[1] for c in self.coefs_]
        if len(self.coefs_) != len(self.intercepts_):
            raise ValueError("coefs_ and intercepts_ must have the same number of layers")
        H, b = [], []
        for layer, (c, i) in enumerate(zip(self.coefs_, self.intercepts_, strict=True)):
            c = np.array(c, dtype=dt, order="C", copy=copy or None)
            i = np.array(i, dtype=dt, copy=copy or None).reshape(-1)
            if c.shape != (sizes[layer], sizes[layer + 1]) or i.shape != (sizes[layer + 1],):
                raise ValueError(
                    f"layer {layer}: coefs_ has shape {c.shape} and intercepts_ {i.shape}; "
                    f"expected {(sizes[layer], sizes[layer + 1])} and {(sizes[layer + 1],)}"
                )
            if not (np.isfinite(c).all() and np.isfinite(i).all()):
                raise ValueError(f"layer {layer}: coefs_/intercepts_ contain NaN or Inf")
            H.append(c)
            b.append(i)
        if sizes[-1] != self.n_outputs_:
            raise ValueError(f"the last layer has {sizes[-1]} units, expected {self.n_outputs_}")
        return Network(family=make_family(self.weights, self.prior_variance), H=H, b=b)

    def _initialize(self, n_features: int, classes: np.ndarray) -> None:
        if classes.shape[0] < 2:
            raise ValueError(
                f"EBPClassifier needs at least 2 classes to train; got 1 class ({classes[0]!r})"
            )
        self.classes_ = classes
        self.n_outputs_ = 1 if classes.shape[0] == 2 else classes.shape[0]
        self._rng = np.random.default_rng(check_random_state(self.random_state).randint(2**31))
        net = init_network(
            (n_features, *self._sizes, self.n_outputs_),
            make_family(self.weights, self.prior_variance),
            self._rng,
            self.init_variance,
            self._float_dtype(),
        )
        self.coefs_, self.intercepts_ = net.H, net.b
        self.n_iter_ = 0
        self.training_error_curve_: list[float] = []

    def _class_indices(self, y: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.classes_, y)
        idx = np.clip(idx, 0, self.classes_.shape[0] - 1)
        unseen = self.classes_[idx] != y
        if unseen.any():
            raise ValueError(
                f"y contains labels not in classes_ {self.classes_.tolist()}: "
                f"{np.unique(y[unseen]).tolist()}"
            )
        return idx

    # ------------------------------------------------------------------ training
    def fit(self, X, y) -> EBPClassifier:
        """Train from scratch for ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like (n_samples, n_features)
        y : array-like (n_samples,)
        """
        self._validate_params()
        X, y = validate_data(
            self, X, y, dtype=self._float_dtype(), order="C", ensure_all_finite=True
        )
        check_classification_targets(y)
        self._initialize(X.shape[1], np.unique(y))
        for _ in range(self.max_iter):
            self._epoch(X, y)
        return self

    def partial_fit(self, X, y, classes=None) -> EBPClassifier:
        """One online pass (one epoch) over ``X``, continuing from the current parameters.

        Parameters
        ----------
        X : array-like (n_samples, n_features)
        y : array-like (n_samples,)
        classes : array-like (n_classes,), required on the first call
            Every label that will ever appear.
        """
        first = not hasattr(self, "classes_")
        self._validate_params()
        X, y = validate_data(
            self, X, y, reset=first, dtype=self._float_dtype(), order="C", ensure_all_finite=True
        )
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            self._initialize(X.shape[1], np.unique(np.asarray(classes)))
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"classes={np.unique(classes).tolist()} differs from the classes of the first "
                f"call, {self.classes_.tolist()}"
            )
        self._epoch(X, y)
        return self

    def _epoch(
        self,
        X: np.ndarray,
        y: np.ndarray,
        on_batch: Callable[[int, int], bool | None] | None = None,
    ) -> None:
        idx = self._class_indices(y)
        net = self._network()
        # Train on the arrays the estimator holds (they may have been replaced by the user).
        self.coefs_, self.intercepts_ = net.H, net.b
        Y = encode_targets(idx, self.n_outputs_, net.dtype)
        if not hasattr(self, "_rng"):
            self._rng = np.random.default_rng(check_random_state(self.random_state).randint(2**31))
        order = epoch_order(X.shape[0], self._rng, self.shuffle)
        t0 = time.perf_counter()
        _, n_errors = run_minibatches_inplace(
            net, X, Y, order, self.batch_size, dropout_nu(self.input_dropout), on_batch=on_batch,
            reinforcement=self._reinforcement, epoch=self.n_iter_,
        )  # fmt: skip
        self.n_iter_ += 1
        if diverged(net):
            warnings.warn(
                DIVERGED_MESSAGE.format(epoch=self.n_iter_, bs=self.batch_size),
                RuntimeWarning,
                stacklevel=3,
            )
        self.training_error_curve_.append(n_errors / X.shape[0])
        if self.verbose:
            print(
                f"epoch {self.n_iter_}: online training error {n_errors / X.shape[0]:.4f} "
                f"({time.perf_counter() - t0:.2f} s)"
            )

    # ------------------------------------------------------------------ prediction
    def _outputs(self, X, readout: str) -> np.ndarray:
        """EBP-P z-scores (probabilistic) or EBP-D linear outputs, shape (n, n_outputs)."""
        check_is_fitted(self, "coefs_")
        if readout not in _READOUTS:
            raise ValueError(f"readout must be one of {_READOUTS}, got {readout!r}")
        X = self._check_X(X, reset=False)
        net = self._network()
        out = np.empty((X.shape[0], self.n_outputs_), dtype=net.dtype)
        if readout == "deterministic":
            W = [net.family.most_probable(h) for h in net.H]
        for s in range(0, X.shape[0], _PREDICT_CHUNK):
            chunk = X[s : s + _PREDICT_CHUNK]
            if readout == "probabilistic":
                out[s : s + _PREDICT_CHUNK] = output_z(net, chunk)
            else:
                out[s : s + _PREDICT_CHUNK] = predict_deterministic(net, chunk, W)
        return out

    def decision_function(self, X, readout: str | None = None) -> np.ndarray:
        """Output scores: EBP-P z = μ/σ per output unit, or EBP-D linear outputs.

        Returns shape (n_samples,) for two classes (positive means ``classes_[1]``), else
        (n_samples, n_classes).
        """
        out = self._outputs(X, readout or self.readout)
        return out[:, 0] if self.n_outputs_ == 1 else out

    def predict(self, X, readout: str | None = None) -> np.ndarray:
        """Class labels by EBP-P or EBP-D (default: the ``readout`` parameter)."""
        out = self._outputs(X, readout or self.readout)
        return self.classes_[decode_outputs(out)]

    def predict_log_proba(self, X) -> np.ndarray:
        """Log class probabilities from the EBP-P output (see Notes), (n_samples, n_classes)."""
        z = self._outputs(X, "probabilistic").astype(np.float64)
        return class_log_probabilities(z)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities from the EBP-P output (see Notes), (n_samples, n_classes)."""
        return np.exp(self.predict_log_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
