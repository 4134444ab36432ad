"""Experiment files: a grid of training runs described in TOML, parsed and validated.

An experiment file (see ``docs/sweeps.md`` for every key)::

    name = "smoke"
    [settings]                      # defaults for every grid
    dataset = "digits"
    epochs = 2
    [[grid]]                        # a list is an axis; grids are expanded one by one
    method = "ebp"
    hidden = [[16], [16, 16]]       # a list of architectures (one architecture: [16, 16])
    weights = ["binary", "real"]
    seed = [0, 1]

The methods a grid may name are those its caller hands over (:class:`ebprop.runs.TrainingMethod`
by name; by default EBP alone, :data:`ebprop.runs.METHODS`; ``ebprop sweep`` adds
:data:`ebprop.baselines.METHODS`). The keys are the fields of their option classes
(:class:`ebprop.runs.TrainOptions`, :class:`ebprop.baselines.BaselineOptions`), and every run's
options are validated by them. Each run gets its own directory ``<out>/<name>`` with a stable,
readable name such as ``ebp-binary-h800x800-f_default-do0.8-s0``.
"""

from __future__ import annotations

import copy
import itertools
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..datasets import DATASETS
from ..exceptions import EBPropError
from ..runs.method import METHODS as EBP_METHODS
from ..runs.method import TrainingMethod
from ..runs.options import RunOptions, nullable_keys, option_keys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "BASELINE_WEIGHTS",
    "METHODS",
    "READOUTS",
    "Experiment",
    "ExperimentError",
    "RunSpec",
    "load_experiment",
    "method_keys",
    "parse_experiment",
    "run_name",
]

#: The training methods a results table lists, in its order (a grid names those it is given).
METHODS = ("ebp", "bp", "binaryconnect", "binarynet")
#: Readouts of each method, as they appear in the results table.
READOUTS = {
    "ebp": ("EBP-P", "EBP-D"),
    "bp": ("BP",),
    "binaryconnect": ("BC",),
    "binarynet": ("BNN",),
}

#: The weight kind each baseline trains.
BASELINE_WEIGHTS = {"bp": "real", "binaryconnect": "binary", "binarynet": "binary"}
_TOP_LEVEL = frozenset({"name", "description", "out", "settings", "grid"})
# Short labels of keys that appear in a run's name only when they are an axis of its grid.
_ABBREV = {
    "dataset": "ds",
    "validation": "val",
    "epochs": "ep",
    "batch_size": "bs",
    "patience": "pat",
    "scaling": "sc",
    "deskew": "dsk",
    "input_gain": "g",
    "dtype": "",
    "init_variance": "iv",
    "prior_variance": "pv",
    "reinforcement": "rf",
    "select_by": "sel",
    "learning_rate": "lr",
    "lr_decay": "lrd",
    "batch_norm": "bn",
}
# Keys always in the name (or implied by it); never appended as axes.
_NAMED = frozenset(
    {
        "method",
        "weights",
        "hidden",
        "architecture",
        "filters",
        "input_dropout",
        "activation",
        "hidden_dropout",
        "seed",
        "data_dir",
        "fit_intercept",
    }
)


class ExperimentError(EBPropError, ValueError):
    """An experiment file is malformed: unknown key, bad value, colliding runs."""


def method_keys(training: TrainingMethod) -> frozenset[str]:
    """The keys a grid may set for a method: the fields of its options class (derived, never
    spelled out), and ``method``."""
    return option_keys(training.options) | {"method"}


def _all_keys(methods: dict[str, TrainingMethod]) -> frozenset[str]:
    return frozenset().union(*(method_keys(m) for m in methods.values()))


def _nullable(methods: dict[str, TrainingMethod]) -> frozenset[str]:
    """Keys that may be null: TOML has no null, so the string "none" stands for it."""
    return frozenset().union(*(nullable_keys(m.options) for m in methods.values()))


# ---------------------------------------------------------------------------- experiment files
@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its directory name, method and full options.

    ``options`` is the ``to_dict()`` of a :class:`ebprop.runs.TrainOptions` (``method ==
    "ebp"``) or :class:`ebprop.baselines.BaselineOptions`, with ``data_dir`` left to the sweep.
    Every setting is in ``options``: the run's folder is recognised as this run only when its
    stored options equal them (``epochs`` aside). ``parsed`` is that options object itself, as
    the experiment validated it (what the run trains with and is compared by, so that its
    values are parsed once); None: the run parses ``options`` again.
    """

    name: str
    method: str
    options: dict[str, Any]
    parsed: RunOptions | None = field(default=None, compare=False, repr=False)

    def settings(self, training: TrainingMethod) -> RunOptions:
        """The options object the run trains with (a copy: training may not change the
        experiment's)."""
        if self.parsed is None:
            return training.options.from_dict(self.options)
        return copy.deepcopy(self.parsed)

    @property
    def group(self) -> str:
        """The name without its seed: runs that differ only in seed share it."""
        return self.options["extra"]["group"]


@dataclass
class Experiment:
    """A parsed experiment file.

    Attributes
    ----------
    name, description : str
    runs : list of RunSpec
        Every run of every grid, in file order, without duplicates.
    out : str or None
        The file's ``out`` key (default output directory), if any.
    data_dir : str or None
        The file's ``data_dir`` setting, if any (the CLI's ``--data-dir`` overrides it).
    source : str
        The TOML text, copied into the output directory.
    methods : dict of str to TrainingMethod
        The methods its grids may name, which train its runs.
    """

    name: str
    description: str = ""
    runs: list[RunSpec] = field(default_factory=list)
    out: str | None = None
    data_dir: str | None = None
    source: str = ""
    methods: dict[str, TrainingMethod] = field(default_factory=lambda: dict(EBP_METHODS))


def _fmt(value: Any) -> str:
    """A value as it appears in a run name: 0.8, 1e-3 → 0.001, True → 1, None → none."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:g}"
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", str(value).replace(",", "+"))


def run_name(method: str, opts: dict[str, Any], axes: Sequence[str]) -> tuple[str, str]:
    """(group, name) of a run: ``<method>-<weights>-h<hidden>-f_<filters>-do<keep>...-s<seed>``."""
    weights = opts.get("weights") or BASELINE_WEIGHTS[method]
    if opts.get("architecture"):  # conv architecture string (docs/conv.md)
        hidden = "a" + _fmt(opts["architecture"])
    else:
        hidden = "h" + ("x".join(str(h) for h in opts["hidden"]) or "none")
    keep = opts.get("input_dropout")
    parts = [method, weights, hidden, f"f_{_fmt(opts.get('filters'))}"]
    parts.append(f"do{_fmt(keep if keep is not None else 1)}")
    if method != "ebp":
        parts.append("sign" if method == "binarynet" else opts.get("activation", "relu"))
        hd = opts.get("hidden_dropout")
        parts.append(f"hd{_fmt(hd if hd is not None else 1)}")
    if opts.get("fit_intercept") is False:  # named only when off: older names stay valid
        parts.append("nobias")
    for key in axes:
        if key not in _NAMED:
            parts.append(f"{_ABBREV.get(key, key)}{_fmt(opts[key])}")
    group = "-".join(parts)
    return group, f"{group}-s{opts['seed']}"


#: What an experiment's ``name`` (its default folder under ``runs/``) may hold.
_SAFE_NAME = re.compile(r"[A-Za-z0-9._+-]+")


def _anchored(table: dict, base: Path) -> dict:
    """``table`` with relative ``data_dir`` and path ``dataset`` values joined to ``base``."""

    def fix(key: str, value: Any) -> Any:
        if not isinstance(value, str) or value == "none":
            return value
        if key == "dataset" and value.strip().lower().replace("_", "-") in DATASETS:
            return value  # a bundled dataset's name
        return os.path.normpath(base / Path(value).expanduser())  # absolute: stays as it is

    out = dict(table)
    for key in ("dataset", "data_dir"):
        if key in out:
            v = out[key]
            out[key] = [fix(key, x) for x in v] if isinstance(v, list) else fix(key, v)
    return out


def _where(path: str, where: str) -> str:
    return f"{path}: {where}" if where else path


def _normalise(key: str, value: Any, where: str, methods: dict[str, TrainingMethod]) -> Any:
    """A TOML value of ``key`` as the options expect it ("none" → None for nullable keys)."""
    if isinstance(value, dict):
        raise ExperimentError(f"{where}: {key} must be a value or a list of values, not a table")
    if key in _nullable(methods) and isinstance(value, str) and value.strip().lower() == "none":
        return None
    if key == "method" and (not isinstance(value, str) or value not in methods):
        hint = ""
        if value in METHODS:  # a method of ebprop that the caller did not hand over
            hint = (
                " (from Python, pass methods={**ebprop.runs.METHODS, **ebprop.baselines.METHODS})"
            )
        raise ExperimentError(
            f"{where}: unknown method {value!r}; choose from {', '.join(methods)}{hint}"
        )
    return value


def _axis(key: str, value: Any, where: str, methods: dict[str, TrainingMethod]) -> list[Any]:
    """The values of one key: a list is an axis, anything else one value.

    ``hidden`` is special: ``[800, 800]`` is one architecture, ``[[800], [800, 800]]`` an axis
    of two, ``800`` one layer of 800.
    """
    if key == "hidden":
        if isinstance(value, int) and not isinstance(value, bool):
            archs = [[value]]
        elif isinstance(value, list) and all(isinstance(v, list) for v in value) and value:
            archs = value
        elif isinstance(value, list) and not any(isinstance(v, list) for v in value):
            archs = [value]
        else:
            raise ExperimentError(
                f"{where}: hidden must be a list of widths ([800, 800]) or a list of such lists, "
                f"got {value!r}"
            )
        # the widths themselves are checked by their declaration (ebprop.params), as a run's
        return [tuple(a) for a in archs]
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ExperimentError(f"{where}: {key} is an empty list; give at least one value")
    return [_normalise(key, v, where, methods) for v in values]


def _build_options(
    method: str, training: TrainingMethod, opts: dict[str, Any], where: str
) -> RunOptions:
    """Validate one run's settings through its options class (the values parsed, once)."""
    opts = {k: v for k, v in opts.items() if k != "method"}
    if "method" in option_keys(training.options):  # one options class for several methods
        opts["method"] = method
    try:
        return training.options.from_dict(opts)
    except (TypeError, ValueError) as exc:
        raise ExperimentError(f"{where}: {exc}") from None


def _expand_grid(
    path: str,
    index: int,
    settings: dict[str, Any],
    grid: dict[str, Any],
    given: dict[str, TrainingMethod],
) -> list[RunSpec]:
    where = f"grid {index + 1}"
    known = _all_keys(given)
    for key in grid:
        if key not in known:
            raise ExperimentError(
                f"{_where(path, where)}: unknown key {key!r}; "
                f"known keys: {', '.join(sorted(known))}"
            )
    merged = {**settings, **grid}
    axes_all = {
        k: _axis(k, v, _where(path, f"{where}, key {k!r}"), given) for k, v in merged.items()
    }
    methods = axes_all.pop("method", ["ebp"])
    if "ebp" in methods and "ebp" not in given:
        raise ExperimentError(f"{_where(path, where)}: name its method ({', '.join(given)})")
    for method in methods:  # a baseline's weight kind is fixed; a grid may only confirm it
        expected = BASELINE_WEIGHTS.get(method)
        if expected and "weights" in grid and expected not in axes_all["weights"]:
            raise ExperimentError(
                f"{_where(path, where)}: weights: {method} trains {expected} weights, got "
                f"{grid['weights']!r}"
            )
    for key in grid:  # a key set in this grid must apply to at least one of its methods
        if key not in ("method", "weights") and not any(
            key in method_keys(given[m]) for m in methods
        ):
            raise ExperimentError(
                f"{_where(path, where)}: key {key!r} does not apply to method(s) "
                f"{', '.join(methods)}"
            )
    runs = []
    for method in methods:
        # Settings that do not apply to a method (weights for bp, ...) are left out for it.
        keys = method_keys(given[method])
        axes = {k: v for k, v in axes_all.items() if k in keys and k != "data_dir"}
        names = list(axes)
        varying = [k for k in names if len(axes[k]) > 1]
        for combo in itertools.product(*(axes[k] for k in names)):
            raw = dict(zip(names, combo, strict=True))
            raw.setdefault("hidden", (100,))
            parsed = _build_options(method, given[method], raw, _where(path, where))
            opts = parsed.to_dict()
            # names show the values as written ("auto"), the options hold them parsed
            group, name = run_name(method, opts | {k: raw[k] for k in varying}, varying)
            opts["extra"] = {"group": group, "run": name}
            parsed.extra = dict(opts["extra"])
            runs.append(RunSpec(name=name, method=method, options=opts, parsed=parsed))
    return runs


def parse_experiment(
    text: str,
    path: str = "<experiment>",
    name: str | None = None,
    base: Path | None = None,
    methods: dict[str, TrainingMethod] | None = None,
) -> Experiment:
    """Parse and validate an experiment's TOML text; every run's options are checked.

    ``base`` (the TOML file's folder, given by :func:`load_experiment`) anchors every relative
    path in the file: ``out``, ``data_dir`` and a ``dataset`` that is a path. ``methods``: the
    training methods its grids may name, by name (default :data:`ebprop.runs.METHODS`, EBP
    alone; ``{**ebprop.runs.METHODS, **ebprop.baselines.METHODS}`` adds the baselines).

    Raises
    ------
    ExperimentError
        Naming the file, the grid and the key: TOML syntax, unknown keys, bad values, two
        different runs that would share a directory name.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{path}: invalid TOML: {exc}") from None
    methods = dict(EBP_METHODS if methods is None else methods)
    known = _all_keys(methods)
    unknown = sorted(set(doc) - _TOP_LEVEL)
    if unknown:
        raise ExperimentError(
            f"{path}: unknown top-level key(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(_TOP_LEVEL))} (run settings go in [settings] or [[grid]])"
        )
    for key in ("name", "description", "out"):
        if key in doc and not isinstance(doc[key], str):
            raise ExperimentError(f"{path}: {key} must be a string, got {doc[key]!r}")
    if "name" in doc and not _SAFE_NAME.fullmatch(doc["name"]) or doc.get("name") in (".", ".."):
        raise ExperimentError(
            f"{path}: name {doc['name']!r} must be one folder name (letters, digits, . _ + -), "
            "so that the sweep stays inside its out folder"
        )
    settings = doc.get("settings", {})
    if not isinstance(settings, dict):
        raise ExperimentError(f"{path}: settings must be a table ([settings])")
    for key in settings:
        if key not in known:
            raise ExperimentError(
                f"{path}: settings: unknown key {key!r}; known keys: {', '.join(sorted(known))}"
            )
    grids = doc.get("grid", [{}])
    if isinstance(grids, dict):
        grids = [grids]
    if not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
        raise ExperimentError(f"{path}: grid must be a table ([grid]) or tables ([[grid]])")
    if base is not None:  # relative paths are the TOML's folder's, not the working folder's
        settings = _anchored(settings, base)
        grids = [_anchored(g, base) for g in grids]
        if isinstance(doc.get("out"), str):
            doc["out"] = os.path.normpath(base / Path(doc["out"]).expanduser())
    data_dir = settings.get("data_dir")
    if data_dir is not None and not isinstance(data_dir, str):
        raise ExperimentError(f"{path}: settings: data_dir must be a string, got {data_dir!r}")
    runs: dict[str, RunSpec] = {}
    for i, grid in enumerate(grids):
        if "data_dir" in grid:
            raise ExperimentError(f"{path}: grid {i + 1}: data_dir belongs in [settings]")
        for run in _expand_grid(path, i, settings, grid, methods):
            seen = runs.get(run.name)
            if seen is not None and seen != run:
                diff = sorted(
                    k
                    for k in set(seen.options) | set(run.options)
                    if seen.options.get(k) != run.options.get(k)
                )
                raise ExperimentError(
                    f"{path}: two different runs would share the directory {run.name!r} "
                    f"(they differ in {', '.join(diff)}); make those keys a list in one grid "
                    "so that they become part of the name, or use separate experiment files"
                )
            runs[run.name] = run
    return Experiment(
        name=doc.get("name") or name or "experiment",
        description=doc.get("description", ""),
        runs=list(runs.values()),
        out=doc.get("out"),
        data_dir=None if data_dir in (None, "none") else data_dir,
        source=text,
        methods=methods,
    )


def load_experiment(
    path: str | os.PathLike, methods: dict[str, TrainingMethod] | None = None
) -> Experiment:
    """Read and validate an experiment file (see :func:`parse_experiment`, also for
    ``methods``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExperimentError(f"{path}: no such experiment file") from None
    return parse_experiment(
        text, str(path), name=path.stem, base=path.parent.resolve(), methods=methods
    )
