"""Model files: one ``.npz`` of plain arrays plus a JSON header. Atomic writes, never pickle.

Layout of a model file (format version 2; version 1 files are still read)::

    header          uint8 (n,)            UTF-8 JSON, described below
    coef_<l>        float (n_in, n_out)   H of layer l (scikit-learn layout, as ``coefs_``)
    intercept_<l>   float (n_out,)        b of layer l
    det_intercept_<l> float (n_out,)      optional: EBP-D biases refitted post hoc (all layers)
    bias_precision_<l> float64 (n_out,)   optional: conv bias precisions τ (all layers)
    classes         (n_classes,)          class labels (int, float or unicode; never object)
    pre_<name>      any                   the preprocessor's arrays (``Preprocessor.get_state``)

The header holds ``format``, ``format_version``, ``ebprop_version``, optionally ``git_commit``
and ``vector_bits`` (where the file was written: :mod:`ebprop.provenance`; files written before
they were recorded lack them), ``architecture`` (sizes
n_0..n_L, weights kind, dtype), ``estimator_params``, ``preprocessor`` (its JSON state or
null), ``classes`` (as a list), ``arrays`` (name → shape and dtype of every array above, checked
on load), and free-form ``training_options``, ``checksums`` and ``metrics`` (JSON objects).

Version 2 adds (a version-1 file gets the values shown on load):

* ``class_names`` — one unique name per class, always written (v1: the names stored, else
  ``str(class)``);
* ``input`` — how the training images looked (:mod:`ebprop.datasets.appearance`: polarity,
  colour, alpha, background, size, mean intensity), or null for a model trained on features or
  saved without it (v1: null; ``ebprop predict`` then keeps the old guessing, with a note).

Adding an OPTIONAL header field (no version bump; files without it load with its default):
put one entry ``name: (default, check)`` in :data:`OPTIONAL_FIELDS`, where ``check(value)``
returns the value (possibly normalised) or raises ``ValueError``/``TypeError`` with a short
reason. :func:`save_model` then writes ``metadata[name]`` (or the default) at the top level of
the header instead of under ``extra``, and :func:`load_model` fills the default in when the file
lacks it and refuses a bad value with a one-line :class:`ModelFormatError` naming the file and
the field, so readers use ``loaded.metadata[name]`` without further checks. The same recipe,
with :data:`ebprop.packed.fileformat.OPTIONAL_FIELDS`, adds a field to ``.ebpb`` files. Bump
:data:`FORMAT_VERSION` only for a change that older readers would misread.

Conv models (optional fields, absent from MLP files): ``architecture`` also holds ``layers``, the
hidden layers' canonical architecture string (e.g. ``"16C5-MP2-32C5-MP2-128"``), and
``input_shape`` (height, width, channels); ``sizes`` is then n_0 (the input features) followed by
each parameterised layer's output width, and ``coef_<l>`` is (k·k·C_in, C_out) for a conv layer.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .core import ConvNetwork, Reinforcement, parse_reinforcement
from .core.architecture import format_architecture
from .datasets import Preprocessor
from .datasets.appearance import check_appearance
from .estimator import EBPClassifier
from .exceptions import DataError, ModelFormatError
from .fileio import (  # noqa: F401
    atomic_savez,
    atomic_write_bytes,
    atomic_write_text,
    decode_header,
    encode_header,
    read_npz,
)

# The file helpers live in :mod:`ebprop.fileio`; re-exported for code written against this module.
from .metrics import model_memory
from .model_arrays import check_model_arrays
from .params import loaded_params, saved_params
from .provenance import provenance
from .trainer import n_outputs

__all__ = [
    "FORMAT_VERSION",
    "METHODS",
    "OPTIONAL_FIELDS",
    "LoadedModel",
    "estimator_params",
    "load_model",
    "save_model",
    "schedule_ran",
]

FORMAT_VERSION = 2
_FORMAT = "ebprop.model"
_HEADER = "header"


#: Training methods a model file may record (optional header field ``method``, default "ebp");
#: ``"binarynet"``: a BinaryNet folded into ±1 weights and EBP-D biases, whose one readout is
#: that sign network (:mod:`ebprop.baselines.binarynet`).
METHODS = ("ebp", "binarynet")


def _check_method(value: Any) -> str:
    if value not in METHODS:
        raise ValueError(f"unknown training method {value!r}; this ebprop reads {METHODS}")
    return value


def _check_schedule(value: Any) -> str | None:
    # the reinforcement schedule that ran, as its spec (None: plain EBP or not recorded); a
    # schedule save_model was handed is written as it is, a spec read or given is parsed
    if value is None:
        return None
    if isinstance(value, Reinforcement):
        return dataclasses.replace(value, auto=False).to_spec()
    if not isinstance(value, str) or parse_reinforcement(value) is None:
        raise ValueError(f"expected a reinforcement schedule's spec or null, got {value!r}")
    return value


#: Optional header fields: name -> (default for files that lack it, check returning the value).
#: ``reinforcement_schedule``: the schedule training ran (``"auto"`` resolved at its start);
#: files written before it existed lack it.
OPTIONAL_FIELDS: dict[str, tuple[Any, Callable[[Any], Any]]] = {
    "input": (None, check_appearance),
    "method": ("ebp", _check_method),
    "reinforcement_schedule": (None, _check_schedule),
}
#: Header fields that must be JSON objects when present (free-form inside).
_OBJECT_FIELDS = ("training_options", "checksums", "metrics", "extra")


def estimator_params(est: EBPClassifier) -> dict:
    """The estimator's constructor parameters as stored: ``get_params()`` but
    :data:`ebprop.params.NOT_SAVED`, each in its JSON form (:mod:`ebprop.params`)."""
    return saved_params(est.get_params())


def _architecture(estimator: EBPClassifier, net) -> dict:
    """The header's ``architecture``: sizes, weights, dtype (and for conv: layers, input_shape)."""
    out = {"weights": estimator.weights, "dtype": str(net.dtype)}
    if not isinstance(net, ConvNetwork):
        return {"sizes": [int(s) for s in net.sizes], **out}
    return {
        "sizes": [int(estimator.n_features_in_)] + [int(h.shape[1]) for h in net.H],
        **out,
        "layers": format_architecture(net.specs[:-1]),
        "input_shape": [int(d) for d in net.input_shape],
    }


# ---------------------------------------------------------------------------- save / load
@dataclass
class LoadedModel:
    """What :func:`load_model` returns.

    Attributes
    ----------
    estimator : EBPClassifier, fitted (predicts, and continues with ``partial_fit``).
    preprocessor : Preprocessor or None, fitted.
    metadata : dict, the file's JSON header.
    """

    estimator: EBPClassifier
    preprocessor: Any | None
    metadata: dict = field(default_factory=dict)

    @property
    def method(self) -> str:
        """The training method: ``"ebp"``, or ``"binarynet"`` (one readout, the sign network)."""
        return self.metadata.get("method", "ebp")

    @property
    def class_names(self) -> tuple[str, ...]:
        """The name of each class, by class index; ``str(class)`` for models saved without."""
        names = self.metadata.get("class_names")  # checked by load_model
        classes = self.estimator.classes_
        if isinstance(names, list) and len(names) == len(classes):
            return tuple(names)
        return tuple(str(c) for c in classes.tolist())


def save_model(
    path: str | os.PathLike,
    estimator: EBPClassifier,
    preprocessor: Any | None = None,
    metadata: dict | None = None,
) -> None:
    """Write a fitted estimator (and its preprocessor) to ``path`` as ``.npz``, atomically.

    Parameters
    ----------
    path : str or PathLike
        The model file (``.npz``).
    estimator : EBPClassifier
        Fitted.
    preprocessor : ebprop.datasets.Preprocessor, optional
        Fitted on the training images; with it, ``ebprop predict`` reads image files.
    metadata : dict, optional
        JSON-able extras; the keys ``training_options``, ``checksums`` and ``metrics`` are stored
        as given (empty when absent), ``class_names`` (one name per class) is printed by the
        command line; any other key is stored under ``extra``. With ``training_options`` holding
        at least ``dataset`` (and the split options used), ``ebprop evaluate`` finds the data.
    """
    metadata = dict(metadata or {})
    # the schedule training ran: fit's (with 'auto' resolved), else the parameter (a run's)
    ran = getattr(estimator, "reinforcement_", None) or estimator.check_params()[1]
    metadata.setdefault("reinforcement_schedule", ran)
    names = metadata.pop("class_names", None)
    optional = {}
    for key, (default, check) in OPTIONAL_FIELDS.items():
        try:
            optional[key] = check(metadata.pop(key, default))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"metadata[{key!r}]: {exc}") from exc
    if not hasattr(estimator, "coefs_"):
        raise ValueError("save_model needs a fitted estimator (call fit or partial_fit first)")
    net = estimator.network()
    arrays: dict[str, np.ndarray] = {}
    for layer, (h, b) in enumerate(zip(net.H, net.b, strict=True)):
        arrays[f"coef_{layer}"] = h
        arrays[f"intercept_{layer}"] = b
    det = getattr(estimator, "deterministic_intercepts_", None)
    for layer, b in enumerate(det or []):
        arrays[f"det_intercept_{layer}"] = np.asarray(b, dtype=net.dtype)
    for layer, tau in enumerate(getattr(estimator, "conv_bias_precisions_", None) or []):
        arrays[f"bias_precision_{layer}"] = np.asarray(tau, dtype=np.float64)  # to train on
    classes = np.asarray(estimator.classes_)
    if classes.dtype == object:
        classes = classes.astype(str)
    arrays["classes"] = classes
    names = [str(c) for c in classes.tolist()] if names is None else [str(n) for n in names]
    problem = _class_names_problem(names, len(classes))
    if problem:
        raise ValueError(f"metadata['class_names']: {problem}")
    pre_meta = None
    if preprocessor is not None:
        pre_meta, pre_arrays = preprocessor.get_state()
        for name, value in pre_arrays.items():
            arrays[f"pre_{name}"] = np.asarray(value)
    header = {
        "format": _FORMAT,
        "format_version": FORMAT_VERSION,
        **provenance(),
        "architecture": _architecture(estimator, net),
        "estimator_params": estimator_params(estimator),
        "n_iter": int(getattr(estimator, "n_iter_", 0)),
        "preprocessor": pre_meta,
        "classes": classes.tolist(),
        "class_names": names,
        **optional,
        "arrays": {k: {"shape": list(v.shape), "dtype": v.dtype.str} for k, v in arrays.items()},
        "training_options": metadata.get("training_options", {}),
        "checksums": metadata.get("checksums", {}),
        "metrics": metadata.get("metrics", {}),
        "extra": {
            k: v
            for k, v in metadata.items()
            if k not in ("training_options", "checksums", "metrics")
        },
    }
    atomic_savez(path, **arrays, **{_HEADER: encode_header(header)})


def _class_names_problem(names: Any, n_classes: int) -> str | None:
    """Why ``names`` cannot name ``n_classes`` classes, or None."""
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return "must be a list of strings"
    if len(names) != n_classes:
        return f"{len(names)} names for {n_classes} classes"
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        return f"names must be unique, {dup} repeat"
    return None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    src = str(path)
    if not path.exists():
        raise FileNotFoundError(f"{src}: no such model file")
    if path.is_dir():
        raise ModelFormatError(f"{src}: is a folder, not a model file (try {src}/model.npz)")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":
        raise ModelFormatError(f"{src}: not a .npz model file (no zip header)")
    return read_npz(
        path, what=".npz model file"
    )  # declared sizes checked before anything is allocated


def _check_header(header: dict, src: str) -> None:
    """Check every header field that is read, and fill in the defaults of a version-1 file and of
    absent optional fields; one :class:`ModelFormatError` naming the file and the field."""
    if header.get("format") != _FORMAT:
        raise ModelFormatError(f"{src}: not an ebprop model (format={header.get('format')!r})")
    version = header.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFormatError(f"{src}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{src}: written with model format version {version} (by ebprop "
            f"{header.get('ebprop_version', '?')}); this ebprop {__version__} reads up to "
            f"version {FORMAT_VERSION}: upgrade ebprop"
        )
    required = ("architecture", "estimator_params", "arrays", "classes")
    if version >= 2:
        required += ("class_names",)
    for key in required:
        if key not in header:
            raise ModelFormatError(f"{src}: header lacks {key!r}")
    for key in ("architecture", "estimator_params", "arrays"):
        if not isinstance(header[key], dict):
            raise ModelFormatError(f"{src}: header field {key!r} must be a JSON object")
    for key in _OBJECT_FIELDS:
        if header.get(key) is None:
            header[key] = {}
        elif not isinstance(header[key], dict):
            raise ModelFormatError(
                f"{src}: header field {key!r} must be a JSON object, got "
                f"{type(header[key]).__name__}"
            )
    if header.get("preprocessor") is not None and not isinstance(header["preprocessor"], dict):
        raise ModelFormatError(f"{src}: header field 'preprocessor' must be a JSON object or null")
    n_iter = header.get("n_iter", 0)
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 0:
        raise ModelFormatError(f"{src}: header field 'n_iter' must be an integer >= 0")
    for key, (default, check) in OPTIONAL_FIELDS.items():
        try:
            header[key] = check(header.get(key, default))
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(f"{src}: header field {key!r}: {exc}") from exc


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Read a model written by :func:`save_model`; never unpickles.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelFormatError
        If the file is truncated or corrupt, of a newer format version, or its arrays do not
        match its header (missing, extra, wrong shape, non-finite). The message names the file.
    """
    path = Path(path)
    src = str(path)
    arrays = _read_npz(path)
    if _HEADER not in arrays:
        raise ModelFormatError(f"{src}: no '{_HEADER}' entry; not an ebprop model file")
    header = decode_header(arrays.pop(_HEADER), src)
    _check_header(header, src)
    try:
        sizes = check_model_arrays(header, arrays, src)
    except (TypeError, AttributeError) as exc:  # a crafted manifest: never a traceback
        raise ModelFormatError(f"{src}: header 'arrays'/'architecture' malformed ({exc})") from exc
    n_layers = len(sizes) - 1
    classes = arrays["classes"]
    if classes.ndim != 1 or len(np.unique(classes)) != len(classes):
        raise ModelFormatError(
            f"{src}: the 'classes' array must list distinct labels, got {classes.tolist()!r}"
        )
    names = header.get("class_names")
    if names is None and header["format_version"] == 1:
        names = [str(c) for c in classes.tolist()]
    problem = _class_names_problem(names, len(classes))
    if problem:
        raise ModelFormatError(f"{src}: header field 'class_names': {problem}")
    header["class_names"] = names
    listed = header["classes"]
    if not isinstance(listed, list) or [str(c) for c in listed] != [
        str(c) for c in classes.tolist()
    ]:
        raise ModelFormatError(
            f"{src}: header field 'classes' {listed!r} differs from the 'classes' array "
            f"{classes.tolist()!r}"
        )
    n_out = n_outputs(classes.shape[0])
    if classes.shape[0] < 2 or sizes[-1] != n_out:
        raise ModelFormatError(
            f"{src}: {classes.shape[0]} classes need {n_out} output units, architecture has "
            f"{sizes[-1]}"
        )
    try:
        version = header.get("ebprop_version")
        est = EBPClassifier.from_parameters(
            loaded_params(
                header["estimator_params"], version if isinstance(version, str) else None
            ),
            [arrays[f"coef_{i}"] for i in range(n_layers)],
            [arrays[f"intercept_{i}"] for i in range(n_layers)],
            classes,
            n_iter=header.get("n_iter", 0),
            n_features=int(sizes[0]),
            bias_precisions=[arrays[f"bias_precision_{i}"] for i in range(n_layers)]
            if "bias_precision_0" in arrays
            else None,
        )
    except (TypeError, ValueError) as exc:
        raise ModelFormatError(f"{src}: inconsistent estimator state ({exc})") from exc
    if "det_intercept_0" in arrays:
        est.deterministic_intercepts_ = [arrays[f"det_intercept_{i}"] for i in range(n_layers)]
    pre = None
    if header.get("preprocessor") is not None:
        pre_arrays = {k[4:]: v for k, v in arrays.items() if k.startswith("pre_")}
        try:
            pre = Preprocessor.from_state(header["preprocessor"], pre_arrays)
        except (DataError, ValueError, KeyError, TypeError) as exc:
            raise ModelFormatError(f"{src}: bad preprocessor state ({exc})") from exc
        if pre.n_features_ != sizes[0]:
            raise ModelFormatError(
                f"{src}: preprocessor gives {pre.n_features_} features, network expects {sizes[0]}"
            )
    return LoadedModel(estimator=est, preprocessor=pre, metadata=header)


def schedule_ran(meta: dict) -> str:
    """The reinforcement schedule a model's training ran, as ``ebprop info`` shows it, from its
    header (``metadata``); files without ``reinforcement_schedule`` from the estimator's
    parameter."""
    if meta.get("reinforcement_schedule"):
        return meta["reinforcement_schedule"]
    given = (meta.get("estimator_params") or {}).get("reinforcement")
    if given in (None, 1, 1.0, "none"):
        return "none"
    if given == "auto":  # written before 'auto' was resolved at start: the fixed schedule
        return "auto (hidden=1.0001,start=20: the schedule 'auto' stood for then)"
    return str(given)


def deployed_bytes(path: str | os.PathLike) -> int:
    """The exported size of the EBP-D network in the model file ``path`` (a BinaryNet's fold too).

    :func:`ebprop.metrics.model_memory`'s rule: one bit per weight, each unit's row padded to
    64-bit words, float32 thresholds; a conv layer counts its (k·k·C_in, C_out) weights once.
    """
    return int(sum(r["bytes_deployed"] for r in model_memory(load_model(path).estimator)))
