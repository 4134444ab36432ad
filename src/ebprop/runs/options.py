"""The options vocabulary: one name per setting, from the command line to the core.

:class:`DataOptions` (which data, which split, which preprocessing) and :class:`RunOptions`
(architecture, schedule, early stopping) are shared by every training method;
:class:`TrainOptions` adds EBP's settings and :class:`ebprop.baselines.BaselineOptions` the
baselines'. Each field is validated once, here, when the options are made; the command line and
the sweep derive their key lists from these classes (:func:`option_keys`). The only translation
left is :meth:`TrainOptions.estimator_params`, to scikit-learn's parameter names.
"""

from __future__ import annotations

import copy
import dataclasses
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.architecture import parse_architecture
from ..datasets import (
    COLORS,
    DATASETS,
    SCALINGS,
    check_color,
    check_input_gain,
    check_load_options,
    is_dataset_path,
    parse_filters,
)
from ..datasets.appearance import parse_background
from ..datasets.augment import check_max_shift
from ..memory import check_memory, conv_bytes, network_bytes
from ..params import Integer, Param, check_option, check_rules, option_params

__all__ = [
    "DataOptions",
    "RunOptions",
    "TrainOptions",
    "check_architecture",
    "declared_field",
    "nullable_keys",
    "option_field",
    "option_keys",
]

SELECT_BY = ("probabilistic", "deterministic")


def positive_int(name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """``value`` as an int >= 1 (None passes when ``allow_none``); ValueError names ``name``."""
    if value is None and allow_none:
        return None
    return (
        Integer(1)(value) if _is_int(value) else Param(name, None, Integer(1), "").validate(value)
    )


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and value >= 1


def option_field(default: Any, help: str, choices: tuple | None = None) -> Any:
    """A field with its ``--help`` text and, for a fixed set of values, its ``choices``: the
    command line's options are generated from these (:mod:`ebprop.cli.train`)."""
    return field(default=default, metadata={"help": help, "choices": choices})


class _Options:
    """to_dict/from_dict shared by the option classes (flat JSON, ``hidden`` as a list)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (``hidden`` and ``image_size`` as lists, declared parameters in their
        stored form: a reinforcement schedule as a number or its spec)."""
        declared = option_params()
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key, value in d.items():
            if key in declared:
                d[key] = declared[key].to_json(value)
            elif key == "image_size" and value is not None:
                d[key] = list(value)
            elif key == "extra":
                d[key] = copy.deepcopy(value)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """Inverse of :meth:`to_dict`; unknown keys are refused (ValueError naming them)."""
        known = option_keys(cls) | {"extra"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown {cls._what} {unknown}; known: {sorted(known)}")
        return cls(**d)


@dataclass
class DataOptions(_Options):
    """Which data a run trains on and how it is turned into features.

    Parameters
    ----------
    dataset : one of :data:`ebprop.datasets.DATASETS`, or a path to your own data (a folder of
        images or an ``.npz``; stored as an absolute path).
    data_dir : folder holding the dataset (None: ``$EBPROP_DATA`` or the cache).
    validation : images held out of the training set: a count, a fraction, 0, or None (the
        dataset's default).
    test_fraction, test_seed : for your own data without a test set: the stratified fraction
        held out as the test set and the fixed seed of that draw.
    image_size : (height, width) every image of your own folder must have, or is resized to
        (``resize="resize"``); None: the size of the first image.
    resize : {"refuse", "resize"}; what to do with an image of another size.
    filters, scaling, deskew, input_gain : :class:`ebprop.datasets.Preprocessor` settings.
    background : colour transparent pixels of image files are composited on: ``white``
        (default), ``black``, ``#rrggbb`` or a grey level 0..255.
    color : {"grey", "rgb"}; your own images read as grey (default) or with their three colour
        channels, (h, w, 3), which conv layers see as 3 input channels (docs/conv.md).
    seed : int >= 0; seeds the validation split and everything random in training.
    dtype : {"float32", "float64"}.
    """

    _what = "data options"

    dataset: str = option_field(
        "digits",
        "A dataset's name, or a path: a folder of images (one subfolder per class) or an .npz "
        "(X_train, y_train[, X_test, y_test]).",
    )
    data_dir: str | None = option_field(None, "Folder holding the dataset.")
    validation: int | float | None = option_field(
        None, "Validation images held out of train: a count or a fraction; 0 for none."
    )
    test_fraction: float = option_field(
        0.2, "Your own data without a test set: the fraction held out for testing."
    )
    test_seed: int = option_field(0, "Your own data without a test set: the seed of that split.")
    image_size: tuple[int, int] | None = option_field(
        None, "Your own images: the size HxW they must have (or are resized to, with --resize)."
    )
    resize: str = option_field(
        "refuse",
        "Resize images of another size to --image-size (Lanczos) instead of refusing them.",
    )
    filters: str | None = option_field(
        None, "Filter banks: default, sobel, laplace, gabor, 'sobel,laplace'…"
    )
    scaling: str = option_field("unit", "How pixels become features.", choices=SCALINGS)
    deskew: bool = option_field(False, "Deskew images by their moments first.")
    input_gain: float = option_field(
        1.0,
        "Multiply the scaled features by this; for EBP, a first-layer bias of variance 1/gain^2 "
        "(docs/conv.md).",
    )
    seed: int = option_field(0, "Seeds the validation split and everything random in training.")
    dtype: str = option_field("float32", "Floating type of the features and the network.",
                      choices=("float32", "float64"))  # fmt: skip
    background: str = option_field(
        "white",
        "Colour transparent pixels of your image files are composited on: white, black, "
        "#rrggbb or a grey level 0..255.",
    )
    color: str = option_field(
        "grey",
        "Your own images: read as grey, or rgb to keep their 3 colour channels (conv layers "
        "see them as 3 input channels; .npz images then (n, h, w, 3)).",
        choices=COLORS,
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field (ValueError naming the field); subclasses extend it."""
        if not isinstance(self.dataset, str | os.PathLike):
            raise ValueError(f"dataset must be a name or a path, got {self.dataset!r}")
        if is_dataset_path(self.dataset):
            # absolute, so the model finds its data from any working folder
            self.dataset = str(Path(self.dataset).expanduser().resolve())
        elif self.dataset not in DATASETS:
            raise ValueError(
                f"unknown dataset {self.dataset!r}; choose from {', '.join(DATASETS)} or give "
                "a path (a folder of images, an .npz)"
            )
        if self.data_dir is not None:
            self.data_dir = str(self.data_dir)
        v = self.validation
        if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real) or v < 0):
            raise ValueError(f"validation must be a count, a fraction or None, got {v!r}")
        if isinstance(self.image_size, list):  # from JSON
            self.image_size = tuple(self.image_size)
        if isinstance(self.test_seed, bool) or not isinstance(self.test_seed, numbers.Integral):
            raise ValueError(f"test_seed must be an integer, got {self.test_seed!r}")
        check_load_options(v, self.test_fraction, self.image_size, self.resize, self.color)
        check_color(self.dataset, self.color)
        if self.filters is not None:
            if not isinstance(self.filters, str):
                raise ValueError(
                    f"filters must be a string such as 'default' or None, got {self.filters!r}"
                )
            try:
                names = parse_filters(self.filters)
            except ValueError as exc:
                raise ValueError(f"filters: {exc}") from None
            if not names:
                self.filters = None
        if self.scaling not in SCALINGS:
            raise ValueError(f"unknown scaling {self.scaling!r}; choose from {', '.join(SCALINGS)}")
        if not isinstance(self.deskew, bool):
            raise ValueError(f"deskew must be true or false, got {self.deskew!r}")
        self.input_gain = check_input_gain(self.input_gain)
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed!r}")
        self.seed = int(self.seed)
        self.dtype = check_option("dtype", self.dtype)
        parse_background(self.background)


@dataclass
class RunOptions(DataOptions):
    """Settings every training method shares: architecture, schedule, early stopping.

    ``epochs`` may be raised when resuming; every other field must match the run's.
    ``patience``: stop after this many epochs without a better validation error.
    ``input_dropout``: keep probability of the inputs (None: no dropout).
    ``augment_shift``: each epoch trains on the training images shifted anew by up to this many
    pixels (:mod:`ebprop.datasets.augment`; 0 = off), for every method alike.
    ``extra``: free-form JSON labels (a sweep stores the run's group and name here).
    """

    _what = "run options"

    hidden: tuple[int, ...] = option_field(
        (100,), "Hidden layer widths, e.g. --hidden 800 800; 'none' for no hidden layer."
    )
    epochs: int = option_field(10, "Epochs to train (may be raised when resuming).")
    batch_size: int = option_field(10, "Minibatch size.")
    input_dropout: float | None = option_field(
        None, "Keep probability of analytic input dropout (the authors used 0.8)."
    )
    patience: int | None = option_field(None, "Stop after this many epochs without progress.")
    augment_shift: int = option_field(
        0,
        "Images only: each epoch, shift every training image by a random offset of up to this "
        "many pixels in each direction (validation and test images are never shifted); 0: off.",
    )
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        super().validate()
        for name in ("hidden", "epochs", "batch_size", "input_dropout"):
            if not (name == "hidden" and _layers_of_architecture(self)):
                setattr(self, name, check_option(name, getattr(self, name)))
        self.augment_shift = check_max_shift(self.augment_shift)
        self.patience = positive_int("patience", self.patience, allow_none=True)


#: ``RunOptions.hidden``'s default: with ``architecture`` given, ``hidden`` must keep it (and
#: becomes None: the architecture gives the hidden layers).
_DEFAULT_HIDDEN = (100,)


def _layers_of_architecture(options: RunOptions) -> bool:
    """True when ``hidden`` is None because ``architecture`` gives the hidden layers."""
    return options.hidden is None and getattr(options, "architecture", None) is not None


#: Training images (the first ones) on which ``refit_thresholds`` fits the EBP-D thresholds:
#: enough for 500-unit layers, and it bounds the refit's memory (a sort per layer).
REFIT_SAMPLES = 20000


def check_architecture(options: RunOptions) -> tuple | None:
    """The parsed layer specs of ``options.architecture`` (None when it is not given).

    Every method's options (EBP's and the baselines') call this once when validated. With an
    architecture, ``options.hidden`` becomes None (what ``options.json`` and the summary record:
    the architecture gives the hidden layers; a stored run's default ``[100]`` reads the same).

    Raises
    ------
    ValueError
        One line: ``hidden`` given beside ``architecture``, or the bad token named.
    """
    if options.architecture is None:
        return None
    if options.hidden not in (None, _DEFAULT_HIDDEN):
        raise ValueError(
            f"give hidden or architecture, not both (hidden {list(options.hidden)}, "
            f"architecture {options.architecture!r})"
        )
    try:
        specs = parse_architecture(options.architecture)
    except ValueError as exc:
        raise ValueError(f"architecture: {exc}") from None
    options.hidden = None
    return specs


def declared_field(option: str) -> Any:
    """The dataclass field of run option ``option`` from its declaration in
    :data:`ebprop.params.PARAMS` (default, help, choices): one home for an option that several
    option classes hold."""
    p = option_params()[option]
    return option_field(p.default, p.help or p.doc, choices=getattr(p.check, "choices", None))


def _validate_train(self: RunOptions) -> None:
    """Check every field (ValueError naming the field); EBP's through their declarations."""
    RunOptions.validate(self)
    for name, param in option_params().items():
        if not (name == "hidden" and _layers_of_architecture(self)):
            setattr(self, name, param.validate(getattr(self, name), name))
    if self.select_by not in SELECT_BY:
        raise ValueError(f"select_by must be one of {SELECT_BY}, got {self.select_by!r}")
    if not isinstance(self.refit_thresholds, bool):
        raise ValueError(f"refit_thresholds must be true or false, got {self.refit_thresholds!r}")
    if self.refit_thresholds and self.weights != "binary":
        raise ValueError("refit_thresholds applies to binary weights only")
    specs = check_architecture(self)
    check_rules(_estimator_params(self), specs)  # the estimator's rules between parameters
    # refuse, before any data is loaded, a network past the memory budget
    check_memory(planned_bytes(self), self.max_memory, planned_network(self))


def _estimator_params(self: RunOptions) -> dict[str, Any]:
    """Constructor parameters of the :class:`~ebprop.EBPClassifier` this run trains (parsed
    values: the reinforcement schedule itself, not its string). With ``architecture``, the
    estimator's ``input_shape`` is left to the caller (it comes from the data:
    :attr:`ebprop.runs.data.Features.input_shape`)."""
    params = {p.name: getattr(self, option) for option, p in option_params().items()}
    if self.architecture is None:
        params["hidden_layer_sizes"] = list(self.hidden)
    else:  # the hidden layers are the architecture's; input_shape comes from the data
        del params["hidden_layer_sizes"]
    params["random_state"] = self.seed
    return params


#: EBP's own fields: the declared parameters with a run-option name that :class:`RunOptions`
#: does not already have (weights, init_variance, prior_variance, reinforcement, jobs, ...).
_EBP_FIELDS = [
    (option, p.annotation, declared_field(option))
    for option, p in option_params().items()
    if option not in {f.name for f in dataclasses.fields(RunOptions)}
]

#: Everything that defines an EBP training run (saved as the run's ``options.json``).
TrainOptions = dataclasses.make_dataclass(
    "TrainOptions",
    [
        *_EBP_FIELDS,
        (
            "select_by",
            "str",
            option_field(
                "probabilistic",
                "Readout whose validation error picks the best epoch (model.npz).",
                choices=SELECT_BY,
            ),
        ),
        (
            "refit_thresholds",
            "bool",
            option_field(
                False,
                "Binary weights: after each epoch refit EBP-D's hidden thresholds on training "
                "images so each sign unit agrees best with its EBP-P counterpart (evaluated and "
                "saved with them).",
            ),
        ),
    ],
    bases=(RunOptions,),
    namespace={
        "__doc__": """Everything that defines an EBP training run (saved as ``options.json``).

    The fields of :class:`RunOptions`, then one field per declared estimator parameter with a
    run-option name (:data:`ebprop.params.PARAMS`: ``architecture`` (e.g.
    ``"16C5-MP2-32C5-MP2-128"``, docs/conv.md; instead of ``hidden``, not with it; the conv
    layers' input shape comes from the dataset's images), ``weights``, ``init_variance``,
    ``prior_variance``, ``reinforcement`` (held parsed, a :class:`~ebprop.core.Reinforcement`
    or None), ``jobs``, ...), then ``select_by``, the readout whose validation error picks the
    best epoch (``model.npz``), and ``refit_thresholds``.
    """,
        "_what": "training options",
        "validate": _validate_train,
        "estimator_params": _estimator_params,
        "__module__": __name__,
    },
)


#: (input width, samples, classes) of the built-in datasets, for the memory check before loading.
_KNOWN_DATA = {
    "digits": (64, 1797, 10),
    "mnist": (784, 70000, 10),
    "fashion-mnist": (784, 70000, 10),
}


def _planned_sizes(options: RunOptions) -> tuple[list[int], int]:
    """(n_0..n_L, samples) of a dense run as far as known before its data is loaded: a built-in
    dataset's, or your own data's ``image_size`` (else 1 input; samples unknown: 0)."""
    size = options.image_size
    pixels = size[0] * size[1] * (3 if options.color == "rgb" else 1) if size else 1
    n_in, n, n_cls = _KNOWN_DATA.get(options.dataset, (pixels, 0, 2))
    return [n_in, *(options.hidden or ()), 1 if n_cls == 2 else n_cls], n


def planned_network(options: RunOptions) -> str:
    """The network a run will build, as text: ``a 784-100-10 network with batch_size 10``."""
    sizes, _ = _planned_sizes(options)
    arch = getattr(options, "architecture", None)
    if arch is not None:
        h, w = _planned_image(options)
        return f"architecture {arch} on {h}x{w} images with batch_size {options.batch_size}"
    return f"a {'-'.join(map(str, sizes))} network with batch_size {options.batch_size}"


def _planned_image(options: RunOptions) -> tuple[int, int]:
    side = {"digits": 8, "mnist": 28, "fashion-mnist": 28}.get(options.dataset)
    return (side, side) if side else tuple(options.image_size or (1, 1))  # type: ignore[return-value]


def planned_bytes(options: RunOptions) -> int:
    """Estimated bytes of a run before its data is loaded (:func:`ebprop.memory.network_bytes`,
    :func:`ebprop.memory.conv_bytes`; your own images count as one grey channel, or three
    with ``color="rgb"``)."""
    sizes, n = _planned_sizes(options)
    itemsize = 8 if options.dtype == "float64" else 4
    arch = getattr(options, "architecture", None)
    if arch is None:
        return network_bytes(sizes, options.batch_size, itemsize, n)
    h, w = _planned_image(options)
    channels = 3 if options.color == "rgb" else 1
    try:
        specs = parse_architecture(arch)
        return conv_bytes(specs, (h, w, channels), sizes[-1], options.batch_size, itemsize, n)
    except ValueError:  # a kernel that does not fit: the network's own check names it
        return 0


def option_keys(cls: type) -> frozenset[str]:
    """The setting names of an option class (``extra`` excluded)."""
    return frozenset(f.name for f in dataclasses.fields(cls) if f.name != "extra")


def nullable_keys(cls: type) -> frozenset[str]:
    """The settings of an option class that may be None."""
    return frozenset(
        f.name for f in dataclasses.fields(cls) if f.name != "extra" and "None" in str(f.type)
    )
