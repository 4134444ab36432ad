"""EBPClassifier: Expectation Backpropagation behind scikit-learn's classifier contract."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .core import (
    ConvNetwork,
    Network,
    Reinforcement,
    class_log_probabilities,
    dropout_nu,
    refit_conv_biases,
    refit_deterministic_biases,
    start_schedule,
)
from .early_stopping import EarlyStopping, validation_split
from .memory import check_estimator_memory
from .networks import attach_bias_precisions, build_network, precisions_attached, readout_outputs
from .params import PARAMS, READOUTS, check_input_scale, check_parameters, network_plan
from .trainer import LabelCoding, Trainer, n_outputs, training_threads

__all__ = ["EBPClassifier"]


class EBPClassifier(ClassifierMixin, BaseEstimator):
    """Fully connected or convolutional classifier with binary (±1) or real weights, by EBP.

    Expectation Backpropagation (Soudry, Hubara & Meir, 2014) keeps a factorised posterior over
    the weights and updates it online, in closed form, from a probabilistic forward pass and a
    backward pass: there is no learning rate. Hidden units are ±1 (sign units).

    Parameters
    ----------
    hidden_layer_sizes : sequence of int, default=(200,)
        Widths of the hidden layers; ``()`` gives a single-layer network.
    architecture : str or None, default=None
        The hidden layers in the usual notation instead, e.g. ``"16C5-MP2-32C5-MP2-128"``
        (docs/conv.md): ``<n>C<k>[s<stride>][p<pad>]`` conv, ``MP<k>`` max-pool, ``<n>`` dense.
        Leave ``hidden_layer_sizes`` at its default when giving it.
    input_shape : (height, width, channels) or None, default=None
        How conv layers see a row of X (flattened in (y, x, c) order); None: a square grey image.
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
        H is drawn uniformly with variance ``init_variance / n_in`` (30: see docs/results.md).
    reinforcement : float, str or None, default=None
        Binary weights only. After each minibatch the hidden layers' fields are scaled,
        H ← ρ H + ΔH, so that their posteriors polarise and EBP-D approaches EBP-P. A number is
        ρ per minibatch for the hidden layers; ``"auto"`` fitted to ``max_iter`` by ``fit``
        (:func:`ebprop.core.resolve_auto`; the schedule run: attribute ``reinforcement_``).
    prior_variance : float, default=1.0
        Variance of real weights (fixed, never updated). Ignored for binary weights.
    fit_intercept : bool, default=True
        Whether each layer has a bias b (the paper's). Without one, b stays 0 and is never
        updated, and the bias's part of the forward pass goes with it: c = n_in inputs instead
        of n_in + 1, and σ²c = Σ_j Var(W_j v_j) loses the bias's +1, so z = μ/σ =
        ⟨v⟩M/√(Σ Var), floored at the dtype's epsilon (the +1 had kept σ from 0), as in DeepMP's
        bias-free networks. The compiled loop implements it; fully connected architectures only.
    conv_bias_step : {"sum", "precision"}, default="sum"
        Conv biases move by EBP's ½ Σ Δ over the minibatch and positions (``"sum"``), or by
        ½ Σ Δ / τ with a precision τ += Σ (½Δ)² of their evidence (``"precision"``, which settles
        under reinforcement; :mod:`ebprop.core.convnet`). Conv architectures only.
    shuffle : bool, default=True
        Shuffle the samples every epoch.
    random_state : int, Generator, RandomState or None, default=None
        Seeds initialisation and shuffling.
    dtype : {"float32", "float64"}, default="float32"
        Floating type of parameters and computations.
    n_jobs : int, "auto" or None, default=None
        Threads of the fused compiled training loop (:mod:`ebprop.kernels`), or 0 for the NumPy
        loop of :mod:`ebprop.core` (the reference; they agree to round-off). None: the compiled
        loop, one thread, when an epoch is large enough to earn back its one-off compile
        (:func:`ebprop.trainer.uses_fused_loop`); ``"auto"``: on 1 or 2 threads (docs/engine.md).
    verbose : int, default=0
        Print one line per epoch when positive.
    early_stopping : bool, default=False
        As ``MLPClassifier``'s: :meth:`fit` holds out a stratified ``validation_fraction``,
        scores both readouts on it each epoch, stops after ``n_iter_no_change`` epochs without
        a better accuracy of ``readout`` and restores the best (earliest) epoch's parameters.
    validation_fraction, n_iter_no_change : float, default=0.1; int, default=10
        The fraction held out (in (0, 1)) and the patience of ``early_stopping``.
    warm_start : bool, default=False
        :meth:`fit` continues from the fitted parameters (same classes and features) for
        ``max_iter`` more epochs instead of starting afresh.
    max_memory : int, str or None, default=None
        Bytes (``"8G"``) a network may need (:func:`ebprop.memory.check_memory`); None: 80 % RAM.

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
    conv_bias_precisions_ : list of ndarray (n_out,) or None
        τ of every layer's biases (float64; dense layers' unused) with ``"precision"``.
    deterministic_intercepts_ : list of ndarray or None
        Biases of the EBP-D network when refitted by :meth:`refit_deterministic` (hidden layers'
        thresholds; the output layer's as trained); None: EBP-D uses ``intercepts_``.
    validation_scores_, best_validation_score_ : list of float, float (None without
        ``early_stopping``): validation accuracy of ``readout`` per epoch of the last :meth:`fit`
        and the best, whose parameters were restored (as ``MLPClassifier``'s).
    history_ : list of dict
        Per epoch of the last :meth:`fit`: ``epoch``, ``train_error`` and, with
        ``early_stopping``, ``val_accuracy_p``/``val_accuracy_d`` (both readouts).

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
        architecture: str | None = None,
        input_shape: tuple[int, int, int] | None = None,
        weights: str = "binary",
        batch_size: int = 10,
        max_iter: int = 20,
        readout: str = "probabilistic",
        input_dropout: float | None = None,
        init_variance: float = 1.0,
        prior_variance: float = 1.0,
        fit_intercept: bool = True,
        conv_bias_step: str = "sum",
        reinforcement: float | str | None = None,
        shuffle: bool = True,
        random_state: int | np.random.Generator | np.random.RandomState | None = None,
        dtype: str = "float32",
        n_jobs: int | str | None = None,
        verbose: int = 0,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        warm_start: bool = False,
        max_memory: int | str | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.architecture = architecture
        self.input_shape = input_shape
        self.weights = weights
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.readout = readout
        self.input_dropout = input_dropout
        self.init_variance = init_variance
        self.prior_variance = prior_variance
        self.fit_intercept = fit_intercept
        self.conv_bias_step = conv_bias_step
        self.reinforcement = reinforcement
        self.shuffle = shuffle
        self.random_state = random_state
        self.dtype = dtype
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.warm_start = warm_start
        self.max_memory = max_memory

    # ------------------------------------------------------------------ validation
    def check_params(self) -> tuple[tuple[int, ...], Reinforcement | None]:
        """Validate the parameters through their declarations (:mod:`ebprop.params`).

        Returns ``(hidden_layer_sizes, reinforcement)``: the widths as a tuple of int and the
        parsed schedule (None for plain EBP). ValueError names the parameter and what it takes.
        A string or number is parsed once per value it is given (``set_params`` gives a new
        one); ``get_params`` keeps returning what the user passed.
        """
        return check_parameters(self, self.__dict__.setdefault("_parsed_params", {}))

    def float_dtype(self) -> np.dtype:
        """The ``dtype`` parameter as a NumPy float dtype (ValueError unless float32/float64)."""
        return np.dtype(PARAMS["dtype"].validate(self.dtype))

    def _check_X(self, X, reset: bool) -> np.ndarray:
        return validate_data(
            self, X, reset=reset, dtype=self.float_dtype(), order="C", ensure_all_finite=True
        )

    # ------------------------------------------------------------------ public seam
    @property
    def coding(self) -> LabelCoding:
        """The label coding of the fitted classes (classes → indices → ±1 targets)."""
        check_is_fitted(self, "classes_")
        return LabelCoding(np.asarray(self.classes_))

    def network(self) -> Network | ConvNetwork:
        """The core network trained, over ``coefs_``/``intercepts_`` (conv: a ``ConvNetwork``).

        The arrays are shared, so training the network updates the estimator. Built once and
        reused while ``coefs_``/``intercepts_`` are the same arrays; rebuilt (and checked for
        shapes, dtype and finiteness) after they were replaced.
        """
        check_is_fitted(self, "coefs_")
        net = getattr(self, "_net", None)
        if (
            net is not None
            and len(net.H) == len(self.coefs_) == len(self.intercepts_)
            and all(a is h for a, h in zip(self.coefs_, net.H, strict=True))
            and all(a is b for a, b in zip(self.intercepts_, net.b, strict=True))
            and precisions_attached(net, *self._bias_step())
        ):
            return net
        self._net = build_network(self, network_plan(self, self.check_params()[0]))
        self._attach_precisions(self._net)
        return self._net

    def _attach_precisions(self, net: Network | ConvNetwork) -> None:
        step, held = self._bias_step()
        self.conv_bias_precisions_ = attach_bias_precisions(net, step, held)

    def _bias_step(self) -> tuple[str, list[np.ndarray] | None]:
        step = PARAMS["conv_bias_step"].validate(self.conv_bias_step)
        return step, getattr(self, "conv_bias_precisions_", None)

    def init_parameters(
        self, n_features: int, classes, rng: np.random.Generator | None = None
    ) -> EBPClassifier:
        """Start untrained: draw initial parameters for ``n_features`` inputs and ``classes``.

        Parameters
        ----------
        n_features : int
        classes : array-like (n_classes,), at least two labels.
        rng : numpy.random.Generator, optional
            Draws the initial H and, later, each epoch's sample order. Default: seeded from
            ``random_state``.

        Returns
        -------
        self, with ``coefs_``, ``intercepts_``, ``classes_`` and ``n_iter_ = 0``.
        """
        hidden, _ = self.check_params()
        classes = np.unique(np.asarray(classes))
        if classes.shape[0] < 2:
            raise ValueError(
                f"EBPClassifier needs at least 2 classes to train; got {classes.shape[0]} class "
                f"({classes.tolist()})"
            )
        if rng is None:
            rng = np.random.default_rng(check_random_state(self.random_state).randint(2**31))
        self._rng = rng
        self.classes_ = classes
        self.n_outputs_ = n_outputs(classes.shape[0])
        self.n_features_in_ = int(n_features)
        check_estimator_memory(self, [self.n_features_in_, *hidden, self.n_outputs_])
        net = build_network(self, network_plan(self, hidden), rng)
        self.coefs_, self.intercepts_ = list(net.H), list(net.b)  # lists of the same arrays
        self.conv_bias_precisions_ = None  # a fresh start: τ = 1
        self._attach_precisions(net)
        self._net = net
        self.n_iter_ = 0
        self.training_error_curve_: list[float] = []
        self.deterministic_intercepts_ = None
        return self

    @classmethod
    def from_parameters(
        cls,
        params: dict,
        coefs: list[np.ndarray],
        intercepts: list[np.ndarray],
        classes,
        n_iter: int = 0,
        n_features: int | None = None,
        bias_precisions: list[np.ndarray] | None = None,
    ) -> EBPClassifier:
        """A fitted estimator holding the given parameters (arrays are shared, not copied).

        It predicts and continues training with :meth:`partial_fit`. ValueError when the
        parameters or the arrays' shapes, dtype or finiteness do not fit. ``n_features``: the
        input width (default: the first layer's rows, which a conv layer does not have).
        ``bias_precisions``: the ``conv_bias_precisions_`` to train on (default: ones).
        """
        est = cls(**params)
        est.check_params()
        est.classes_ = np.asarray(classes)
        est.n_outputs_ = n_outputs(est.classes_.shape[0])
        est.n_features_in_ = int(coefs[0].shape[0] if n_features is None else n_features)
        est.coefs_ = list(coefs)
        est.intercepts_ = list(intercepts)
        est.n_iter_ = int(n_iter)
        est.training_error_curve_ = []
        est.deterministic_intercepts_ = None
        est.conv_bias_precisions_ = (
            None if bias_precisions is None else [np.asarray(t, float) for t in bias_precisions]
        )
        est.network()  # checks shapes, dtypes and finiteness
        return est

    def trainer(self) -> Trainer:
        """A :class:`ebprop.trainer.Trainer` over :meth:`network`, at epoch ``n_iter_``.

        Training through it updates ``coefs_``/``intercepts_``; its ``epoch`` is the caller's to
        copy back into ``n_iter_``; its schedule is ``reinforcement_`` as ``fit`` resolved it.
        """
        schedule = getattr(self, "reinforcement_", None) or self.check_params()[1]
        net = self.network()
        # Train on the arrays the network holds (the user's arrays, converted if need be).
        self.coefs_, self.intercepts_ = list(net.H), list(net.b)
        if getattr(self, "_rng", None) is None:
            self._rng = np.random.default_rng(check_random_state(self.random_state).randint(2**31))
        return Trainer(
            net=net,
            rng=self._rng,
            batch_size=int(self.batch_size),
            nu=dropout_nu(self.input_dropout),
            reinforcement=schedule,
            shuffle=bool(self.shuffle),
            epoch=int(self.n_iter_),
            n_jobs=self.n_jobs,
        )

    # ------------------------------------------------------------------ training
    def fit(self, X, y) -> EBPClassifier:
        """Train from scratch for ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like (n_samples, n_features)
        y : array-like (n_samples,)
        """
        _, schedule = self.check_params()
        X, y = validate_data(
            self, X, y, dtype=self.float_dtype(), order="C", ensure_all_finite=True
        )
        check_classification_targets(y)
        check_input_scale(X, self.float_dtype())
        classes = np.unique(y)
        X_val = y_val = None
        if self.early_stopping:
            seed = check_random_state(self.random_state).randint(2**31)
            X, X_val, y, y_val = validation_split(X, y, self.validation_fraction, seed)
        self.reinforcement_ = start_schedule(schedule, self.max_iter, len(X), self.batch_size)
        if self.warm_start and hasattr(self, "coefs_"):
            if not np.array_equal(classes, self.classes_):
                raise ValueError(
                    f"warm_start: y holds classes {classes.tolist()}, the fitted model "
                    f"{self.classes_.tolist()}; fit with warm_start=False to start afresh"
                )
        else:
            self.init_parameters(X.shape[1], classes)
        self.history_, self.validation_scores_ = [], [] if self.early_stopping else None
        stopping = EarlyStopping(self.n_iter_no_change)
        trained = [*self.coefs_, *self.intercepts_, *(self.conv_bias_precisions_ or [])]
        for _ in range(self.max_iter):
            record = {"epoch": self.n_iter_ + 1, "train_error": self._epoch(X, y)}
            self.history_.append(record)
            if not self.early_stopping:
                continue
            for k, readout in (("p", "probabilistic"), ("d", "deterministic")):
                record[f"val_accuracy_{k}"] = float(np.mean(self.predict(X_val, readout) == y_val))
            score = record["val_accuracy_" + ("p" if self.readout == "probabilistic" else "d")]
            self.validation_scores_.append(score)
            if stopping.update(score, trained):
                break
        self.best_validation_score_ = stopping.best_score
        if stopping.best is not None:  # the best epoch, written into the network's arrays
            stopping.restore(trained)
            for layer in range(len(self.coefs_)):  # the cached moments ⟨W⟩, ⟨W⟩² follow H
                self.network().refresh_moments_inplace(layer)
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
        self.check_params()
        X, y = validate_data(
            self, X, y, reset=first, dtype=self.float_dtype(), order="C", ensure_all_finite=True
        )
        check_classification_targets(y)
        check_input_scale(X, self.float_dtype())
        if first:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
            self.init_parameters(X.shape[1], classes)
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"classes={np.unique(classes).tolist()} differs from the classes of the first "
                f"call, {self.classes_.tolist()}"
            )
        self._epoch(X, y)
        return self

    def _epoch(self, X: np.ndarray, y: np.ndarray) -> float:
        """One epoch; returns its online training error."""
        self.deterministic_intercepts_ = None  # refitted thresholds go stale with training
        trainer = self.trainer()
        Y = self.coding.targets(y, trainer.net.dtype)
        t0 = time.perf_counter()
        with training_threads():
            trainer.train_epoch(X, Y, check_finite=True)
        self.n_iter_ = trainer.epoch
        self.training_error_curve_.append(trainer.n_errors / X.shape[0])
        if self.verbose:
            print(
                f"epoch {self.n_iter_}: online training error {trainer.n_errors / X.shape[0]:.4f} "
                f"({time.perf_counter() - t0:.2f} s)"
            )
        return trainer.n_errors / X.shape[0]

    # ------------------------------------------------------------------ prediction
    def _outputs(self, X, readout: str) -> np.ndarray:
        """EBP-P z-scores or EBP-D linear outputs, (n, n_outputs): :func:`readout_outputs`."""
        check_is_fitted(self, "coefs_")
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        X, refit = self._check_X(X, reset=False), getattr(self, "deterministic_intercepts_", None)
        return readout_outputs(self.network(), X, readout, self.n_outputs_, refit)

    def refit_deterministic(self, X) -> EBPClassifier:
        """Refit EBP-D's hidden thresholds on training inputs ``X`` (n_samples, n_features).

        Each hidden sign unit's (conv channel's, positions pooled) bias is chosen, bottom-up, to
        agree most often with the sign of its EBP-P counterpart's mean
        (:func:`ebprop.core.refit_deterministic_biases`, :func:`ebprop.core.refit_conv_biases`),
        stored in ``deterministic_intercepts_`` for the EBP-D readout and the bit export. EBP-P
        is unaffected; further training discards them (they would be stale)."""
        check_is_fitted(self, "coefs_")
        X, net = self._check_X(X, reset=False), self.network()
        refit = refit_conv_biases if isinstance(net, ConvNetwork) else refit_deterministic_biases
        self.deterministic_intercepts_ = refit(net, X)
        return self

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
        return self.coding.labels(out)

    def predict_log_proba(self, X) -> np.ndarray:
        """Log class probabilities from the EBP-P output (see Notes), (n_samples, n_classes)."""
        z = self._outputs(X, "probabilistic").astype(np.float64)
        return class_log_probabilities(z)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities from the EBP-P output (see Notes), (n_samples, n_classes)."""
        return np.exp(self.predict_log_proba(X))

    def __getstate__(self) -> dict:
        # The cached Network (with its moments M, M² and scratch buffers) is rebuilt on demand;
        # pickles and deep copies carry only the parameters.
        state = super().__getstate__()
        state.pop("_net", None)
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
