"""Every estimator parameter declared once: type, range, choices, parser, doc, option name.

:data:`PARAMS` maps each :class:`~ebprop.EBPClassifier` constructor parameter to a
:class:`Param`. The estimator (:func:`check_parameters`), the run options
(:class:`ebprop.runs.TrainOptions`, whose EBP fields are generated from here), the command line
(``ebprop train``'s options come from those fields) and the sweep files all validate through it,
so one bad value gets one message, ``"<name> must be <what it accepts>, got <value>"``, whoever
passed it. A parameter is parsed once: :meth:`Param.check` returns the parsed value (a
``reinforcement`` string becomes a :class:`~ebprop.core.Reinforcement`), and what holds the
parsed value passes that on. Model files store ``get_params()`` through :meth:`Param.to_json`,
all but :data:`NOT_SAVED`.

How to add a parameter
----------------------
1. Add it to :class:`~ebprop.EBPClassifier`: the ``__init__`` argument, ``self.x = x`` and a
   numpy-style entry in the class docstring.
2. Add one :class:`Param` to :data:`PARAMS` below: its default (the same as ``__init__``'s), a
   constraint (:class:`Integer`, :class:`Real`, :class:`Choice`, :class:`Boolean`,
   :class:`Nullable` of one, from :mod:`ebprop.constraints`, or your own callable returning the
   parsed value and raising ``ValueError(describe)``, or :class:`Reason` with a whole
   sentence; then give ``example=`` too), a one-line
   ``doc`` and, when a run should be able to set it, ``option=`` (the run-option, sweep-key
   and ``--flag`` name; ``help=`` the ``--help`` text).
   The field appears in :class:`~ebprop.runs.TrainOptions`, in ``options.json``, as a sweep key,
   as ``ebprop train --flag`` and in the runs table's recipe without touching those modules
   (``tests/test_params_roundtrip.py`` carries every declared parameter through them).
3. Use the parsed value where it does its work. A parameter of the fully connected core
   (``network=True``) arrives as a field of :class:`ebprop.core.Network` of the same name:
   add the field there (``metadata=OPTION``) and read it where the forward pass or the update
   needs it; nothing in between changes. The fused kernels decline a network whose option is
   not at its default (the NumPy core trains it) until they implement it.
4. If it is stored in model files and older files were trained with another behaviour than the
   new default gives, add ``since=(version, old_value)``: files written by an ebprop before
   ``version`` (``ebprop_version`` of the header) load with ``old_value``. Run folders stored
   before the parameter existed resume with its declared default; when that is not what they
   ran, add the old value to ``ebprop.runs.folder.ADDED_DEFAULTS`` too.

Cross-parameter rules (reinforcement needs binary weights; ``architecture`` or
``hidden_layer_sizes``) are in :func:`check_parameters`.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import param_parsers as parse
from .constraints import Boolean, Choice, Either, Integer, Nullable, Real
from .core import Reinforcement, same_request, stored_form
from .core.architecture import LayerSpec, dense_sizes, is_convolutional, parse_architecture
from .memory import parse_memory
from .param_parsers import Reason

__all__ = [
    "DEFAULT_HIDDEN",
    "NOT_SAVED",
    "PARAMS",
    "READOUTS",
    "Reason",
    "Boolean",
    "Choice",
    "Integer",
    "Nullable",
    "Param",
    "Real",
    "check_input_scale",
    "check_option",
    "check_parameters",
    "check_rules",
    "conv_specs",
    "loaded_params",
    "network_options",
    "network_plan",
    "option_params",
    "saved_params",
]

#: The two readouts: EBP-P and EBP-D.
READOUTS = ("probabilistic", "deterministic")


def _memory(value: Any) -> int | str | None:
    try:
        parse_memory(value)
    except ValueError:
        raise ValueError(_memory.describe) from None
    return value


_memory.describe = "a size such as 8G, 512M or a number of bytes, or None"  # type: ignore[attr-defined]
_MEMORY_HELP = (
    "Largest memory the network may need, e.g. 8G or 512M; a larger one is refused with its "
    "estimated bytes before anything is allocated. [default: 80% of the machine's total memory]"
)


# ---------------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class Param:
    """One estimator parameter.

    Attributes
    ----------
    name : the constructor argument.
    default : its default (as in ``__init__``).
    check : constraint; returns the parsed value, raises ``ValueError(describe)``.
    doc : one line: what it is.
    option : its name as a run option, sweep key and ``--flag`` (None: not a run option).
    help : ``--help`` text of the flag (default: ``doc``).
    annotation : the run-option field's type, as text.
    to_json : the stored form of a parsed value.
    same : whether two stored forms ask for the same thing (a resumed run or a sweep's folder
        is that run when every option is the same); default: equal.
    since : ``(version, old_value)``: model files written before ``version`` meant
        ``old_value`` when they lack the parameter.
    network : the parsed value is handed to the core's fully connected
        :class:`~ebprop.core.Network` as the keyword of the same name (what the forward pass,
        the update and the kernels read), by :func:`network_options`.
    example : a valid value other than the default, for a ``check`` the tests cannot draw one
        from (not one of :mod:`ebprop.constraints`): ``tests/test_params_roundtrip.py`` carries
        every parameter through the run options, ``options.json``, the sweep, the command line
        and a model file with it.
    example_with : run options the example needs beside it, where a rule between parameters
        refuses it alone (``conv_bias_step="precision"`` needs a conv ``architecture``).
    """

    name: str
    default: Any
    check: Callable[[Any], Any]
    doc: str
    option: str | None = None
    help: str | None = None
    annotation: str = "Any"
    to_json: Callable[[Any], Any] = parse.identity
    same: Callable[[Any, Any], bool] = operator.eq
    since: tuple[str, Any] | None = None
    network: bool = False
    example: Any = None
    example_with: Mapping[str, Any] | None = None

    def validate(self, value: Any, name: str | None = None) -> Any:
        """The parsed ``value``; ValueError ``"<name> must be …, got …"`` (name: this one)."""
        try:
            return self.check(value)
        except Reason as exc:
            raise ValueError(f"{name or self.name} {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{name or self.name} must be {exc}, got {value!r}") from None

    def default_for(self, version: str | None) -> Any:
        """The value a model file written by ebprop ``version`` meant when it lacks this one."""
        if self.since is not None and version is not None and _older(version, self.since[0]):
            return self.since[1]
        return self.default


def _older(version: str, than: str) -> bool:
    def key(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("+")[0].split(".")[:3] if p.isdigit())

    return key(version) < key(than)


#: ``hidden_layer_sizes``'s default: with ``architecture`` given it must stay at this value.
DEFAULT_HIDDEN = (200,)

_REINFORCEMENT_HELP = (
    "Binary weights: scale hidden fields H by this ρ per minibatch (e.g. 1.0001), 'auto' "
    "(fitted to --epochs at the start: plain for half the epochs, then the ρ that polarises "
    "the fields by e^4 by the end; stored explicitly in options.json), or "
    "'hidden=…,output=…,start=…,ramp=…,stop=…'. [default: off]"
)
_ARCHITECTURE_HELP = (
    "The hidden layers in the usual notation instead of --hidden, e.g. "
    "--arch 16C5-MP2-32C5-MP2-128: <n>C<k>[s<stride>][p<pad>] conv, MP<k> max-pool, <n> dense "
    "(docs/conv.md)."
)
_CONV_BIAS_HELP = (
    "Conv layers' bias step: 'sum' (EBP's, summed over minibatch and positions) or 'precision' "
    "(each conv bias accumulates the evidence of its terms and moves by their sum over it; "
    "docs/conv.md). [default: sum]"
)
_JOBS_HELP = (
    "Threads of the fused compiled training loop: a number, or auto (one or two, whichever "
    "measures faster as it runs; the results of --jobs 2 either way); 0 for the NumPy loop. "
    "[default: auto for a new run; the compiled loop runs large epochs where numba is installed]"
)

PARAMS: dict[str, Param] = {
    p.name: p
    for p in (
        Param("hidden_layer_sizes", DEFAULT_HIDDEN, parse.widths, "Widths of the hidden layers.",
              option="hidden", to_json=parse.list_json, example=(7, 5)),
        Param("architecture", None, Nullable(parse.text),
              "Hidden layers as '16C5-MP2-32C5-MP2-128'.", option="architecture",
              annotation="str | None", help=_ARCHITECTURE_HELP, example="2C3-MP2-8"),
        Param("input_shape", None, Nullable(parse.shape3), "How conv layers see a row of X.",
              to_json=parse.list_json, example=(4, 4, 4)),
        Param("weights", "binary", Choice("binary", "real"), "Binary (±1) or real weights.",
              option="weights", annotation="str"),
        Param("batch_size", 10, Integer(1), "Minibatch size (the update is summed).",
              option="batch_size"),
        Param("max_iter", 20, Integer(1), "Epochs.", option="epochs"),
        Param("readout", "probabilistic", Choice(*READOUTS), "EBP-P or EBP-D predictions."),
        Param("input_dropout", None,
              Nullable(Real(0.0, 1.0, "right", what="a keep probability in (0, 1]")),
              "Keep probability of analytic input dropout (the authors used 0.8).",
              option="input_dropout"),
        Param("init_variance", 1.0, Real(0.0, None, "neither"),
              "Variance of the initial H, times n_in.", option="init_variance",
              annotation="float"),
        Param("prior_variance", 1.0, Real(0.0, None, "neither"),
              "Variance of real weights (fixed).", option="prior_variance", annotation="float"),
        Param("fit_intercept", True, Boolean(), "Whether each layer has a bias b.",
              option="fit_intercept", annotation="bool", network=True,
              help="Give every layer a bias b (--no-fit-intercept: none, b = 0, as in DeepMP's "
              "networks; fully connected only)."),
        Param("conv_bias_step", "sum", Choice("sum", "precision"),
              "How a conv bias moves: the plain sum over positions or precision-weighted.",
              option="conv_bias_step", annotation="str", help=_CONV_BIAS_HELP,
              example_with={"architecture": "2C3-8"}),
        Param("reinforcement", None, parse.schedule, "Reinforcement schedule (binary weights).",
              option="reinforcement", help=_REINFORCEMENT_HELP,
              annotation="float | str | Reinforcement | None", to_json=stored_form,
              same=same_request,
              example="hidden=1.001,start=1"),
        Param("shuffle", True, Boolean(), "Shuffle the samples every epoch."),
        Param("random_state", None, parse.anything, "Seeds initialisation and shuffling.",
              to_json=parse.random_state_json, example=3),
        Param("dtype", "float32", parse.float_dtype, "Floating type.", option="dtype",
              example="float64"),
        Param("n_jobs", None, Nullable(Either(Integer(0), Choice("auto"))),
              "Threads of the fused loop; 0: NumPy; 'auto': 1 or 2, measured.",
              option="jobs", help=_JOBS_HELP, annotation="int | str | None"),
        Param("verbose", 0, parse.anything, "Print one line per epoch when positive.", example=1),
        Param("early_stopping", False, Boolean(), "Stop on a held-out fraction's accuracy."),
        Param("validation_fraction", 0.1, Real(0.0, 1.0, "neither", what="a fraction in (0, 1)"),
              "The fraction early stopping holds out."),
        Param("n_iter_no_change", 10, Integer(1), "Early stopping's patience, in epochs."),
        Param("warm_start", False, Boolean(), "fit continues from the fitted parameters."),
        Param("max_memory", None, _memory, "Bytes a network may need (default 80 % of RAM).",
              option="max_memory", help=_MEMORY_HELP, annotation="int | str | None",
              example="8G"),
    )
}  # fmt: skip

#: Parameters model files do not store: the machine's own choice (threads), not the model's.
NOT_SAVED = frozenset({"n_jobs", "max_memory"})


def network_options(est: Any) -> dict[str, Any]:
    """The parsed values of the parameters the core's :class:`~ebprop.core.Network` takes."""
    return {p.name: p.validate(getattr(est, p.name)) for p in PARAMS.values() if p.network}


def network_plan(
    est: Any, sizes: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[LayerSpec, ...] | None, dict]:
    """What an estimator's network is: ``(hidden widths, conv layer specs or None for a fully
    connected network, the core Network's options)``; what :func:`ebprop.networks.build_network`
    builds. ``sizes``: the hidden widths :func:`check_parameters` returned for ``est``."""
    specs = conv_specs(est)
    conv = specs if specs is not None and is_convolutional(specs) else None
    return sizes, conv, network_options(est)


def option_params() -> dict[str, Param]:
    """The declared parameters that are run options, by option name."""
    return {p.option: p for p in PARAMS.values() if p.option is not None}


def check_option(option: str, value: Any) -> Any:
    """``value`` of run option ``option`` checked and parsed by its declaration."""
    return option_params()[option].validate(value, option)


# ---------------------------------------------------------------------------- the estimator
def check_parameters(
    est: Any, parsed: dict[str, tuple[Any, Any]] | None = None
) -> tuple[tuple[int, ...], Reinforcement | None]:
    """Validate an :class:`~ebprop.EBPClassifier`'s constructor parameters (its ``check_params``).

    Each parameter through its :class:`Param`, then the rules between parameters. ``parsed``:
    the caller's memo ``{name: (given, parsed value)}``, read and filled here: a parameter
    whose value is the very object it parsed last time, a string or number (which cannot change
    in place), is not parsed again (the estimator keeps one, so that its ``reinforcement`` is
    parsed once per value it is given).

    Returns
    -------
    (hidden_layer_sizes, reinforcement) : the widths as a tuple of int and the parsed
    reinforcement schedule (None for plain EBP).
    """
    memo = {} if parsed is None else parsed
    values = {}
    for name, p in PARAMS.items():
        given = getattr(est, name)
        held = memo.get(name)
        if held is None or held[0] is not given:
            held = (given, p.validate(given))
            if isinstance(given, str | numbers.Number):
                memo[name] = held
        values[name] = held[1]
    sizes = values["hidden_layer_sizes"]
    specs = conv_specs(est)
    if specs is not None and dense_sizes(specs) is not None:
        sizes = dense_sizes(specs)  # an all-dense architecture is an MLP
    elif specs is not None:  # the conv core takes none of the dense core's network options
        for name, p in PARAMS.items():
            if p.network and values[name] != p.default:
                raise ValueError(
                    f"{name}={values[name]!r} supports fully connected networks only; "
                    f"leave it at {p.default!r} with a convolutional architecture"
                )
    check_rules(values, specs)
    return sizes, values["reinforcement"]


def check_rules(values: Mapping[str, Any], specs: tuple[LayerSpec, ...] | None) -> None:
    """The rules between parameters that the estimator and the run options share; ``values``:
    the parsed parameters by name, ``specs``: the parsed architecture (None without one).
    ValueError, one line, naming the parameter."""
    if values["reinforcement"] is not None and values["weights"] != "binary":
        raise ValueError(
            "reinforcement applies to binary weights only (it polarises P(W = ±1)); "
            f"got weights={values['weights']!r}"
        )
    step = values["conv_bias_step"]
    if step != "sum" and (specs is None or dense_sizes(specs) is not None):
        raise ValueError(
            f"conv_bias_step={step!r} applies to conv layers only; give an architecture with "
            "conv layers or leave it at 'sum'"
        )


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


def conv_specs(est: Any) -> tuple[LayerSpec, ...] | None:
    """The hidden layers of ``est.architecture`` (None when not given); checks ``input_shape``.

    ValueError (one line, naming the parameter) for a malformed string, for ``architecture``
    given together with a non-default ``hidden_layer_sizes``, or a malformed ``input_shape``.
    """
    PARAMS["input_shape"].validate(getattr(est, "input_shape", None))
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


def saved_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``get_params()`` as a model file stores it: all but :data:`NOT_SAVED`, as JSON."""
    return {
        k: PARAMS[k].to_json(v) if k in PARAMS else v
        for k, v in params.items()
        if k not in NOT_SAVED
    }


def loaded_params(stored: Mapping[str, Any], version: str | None) -> dict[str, Any]:
    """The constructor parameters of a stored model, parsed once: what it stored (checked by
    each declaration; ValueError names the parameter), and for each declared parameter it
    lacks, the default in force when ebprop ``version`` wrote it. Unknown names pass through
    (the estimator refuses them)."""
    out = {k: PARAMS[k].validate(v) if k in PARAMS else v for k, v in stored.items()}
    for name, p in PARAMS.items():
        if name not in out and name not in NOT_SAVED:
            out[name] = p.default_for(version)
    return out
