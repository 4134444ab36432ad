"""Which source files an estimator parameter reaches (issue 34's target: a new EBP
hyperparameter touches its core/kernel code, its declaration and its docstring, nothing else).

For every parameter declared in :data:`ebprop.params.PARAMS`, the files under ``src/ebprop``
outside ``core/`` and ``kernels/`` that *name* it: the parameter's or its run option's name as
an identifier (a variable, attribute, argument, keyword, function or import) or as a string
that is exactly that name (a dict key, ``getattr``'s name). Read with :mod:`ast`, so comments
and docstrings, where a common word such as "shuffle" may appear in prose, do not count.

A parameter may be named in ``params.py`` (its declaration) and ``estimator.py`` (the
constructor and its docstring). Today's other places are listed in :data:`ALLOWED`, each with
its reason; the list may only shrink (an entry that no longer applies fails too), and a new
parameter gets no entry: if it has to be named in, say, ``cli/train.py`` or
``runs/options.py``, the declaration is missing something.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ebprop.params import PARAMS

SRC = Path(__file__).resolve().parents[1] / "src" / "ebprop"

#: Where every parameter may be named: its declaration, the constructor and its docstring.
HOME = frozenset({"params.py", "estimator.py"})

#: Names that are common words of the code base, naming data's or files' own things too
#: (an array's dtype, a model file's weights, a baseline's architecture): the test cannot
#: tell those uses from the parameter's, so it does not follow these.
SHARED_WORDS = {
    "dtype": "every array has a dtype (datasets, packed files, baselines, metrics)",
    "weights": "'binary'/'real' weights are a model file's and the packed format's kind too",
    "readout": "the baselines and the packed runtime have readouts of their own",
    "architecture": "the baselines, the packed runtime and memory planning read layer strings",
    "input_shape": "images, the packed runtime and the baselines have input shapes",
    "random_state": "the datasets' splits take a random_state of their own",
}

#: Today's exceptions: parameter -> (the files outside HOME that name it, why).
ALLOWED: dict[str, tuple[frozenset[str], str]] = {
    "hidden_layer_sizes": (
        frozenset({"baselines/binarynet.py", "baselines/convnet.py", "baselines/torch_mlp.py",
                   "cli/baselines.py", "cli/train.py", "runs/folder.py", "runs/options.py",
                   "sweep/experiment.py", "sweep/results.py", "sweep/tables.py"}),
        "'hidden' is also the baselines' option, the CLI's multi-value --hidden parser, the "
        "runs' architecture rule (hidden or architecture) and the sweep's run names and tables",
    ),
    "max_iter": (
        frozenset({"baselines/torch_mlp.py", "cli/baselines.py", "cli/train.py", "plots.py",
                   "runs/ebp.py", "runs/folder.py", "runs/options.py", "runs/warm.py",
                   "sweep/experiment.py", "sweep/tables.py"}),
        "'epochs' is every method's budget: resume and warm start may change it, the "
        "baselines and plots count epochs, the sweep names runs by it",
    ),
    "batch_size": (
        frozenset({"baselines/options.py", "baselines/torch_mlp.py", "memory.py",
                   "runs/data.py", "runs/ebp.py", "runs/options.py", "sweep/experiment.py",
                   "trainer.py"}),
        "every method's minibatch size (the baselines' own option), the memory plan's and "
        "the trainer's loop length",
    ),
    "input_dropout": (
        frozenset({"baselines/options.py", "baselines/torch_mlp.py", "runs/options.py",
                   "sweep/experiment.py", "sweep/results.py", "sweep/tables.py"}),
        "a run option of every method (the baselines' dropout too); the sweep names runs and "
        "tables columns by it",
    ),
    "init_variance": (
        frozenset({"networks.py", "sweep/experiment.py"}),
        "networks.py draws the initial H with it; the sweep's short run-name label (_ABBREV)",
    ),
    "prior_variance": (
        frozenset({"networks.py", "reference.py", "sweep/experiment.py"}),
        "networks.py builds the real-weight family with it; the independent oracle takes it; "
        "the sweep's short run-name label (_ABBREV)",
    ),
    "fit_intercept": (
        frozenset({"baselines/options.py", "baselines/torch_mlp.py", "sweep/experiment.py"}),
        "the baselines have an option of the same name; run names say 'nobias' when off",
    ),
    "reinforcement": (
        frozenset({"cli/model.py", "persist.py", "runs/ebp.py", "runs/folder.py",
                   "runs/warm.py", "sweep/experiment.py", "trainer.py"}),
        "the schedule is per epoch: 'auto' is resolved against the run's epochs and stored "
        "(runs/ebp.py, runs/folder.py), a warm start may change it, the trainer reads each "
        "minibatch's factors, model files record the schedule that ran (persist's header, "
        "ebprop info) and the sweep labels it 'rf'",
    ),
    "shuffle": (frozenset({"trainer.py"}), "the trainer draws each epoch's order"),
    "n_jobs": (
        frozenset({"cli/sweep.py", "cli/train.py", "runs/ebp.py", "runs/folder.py",
                   "runs/warm.py", "sweep/execute.py", "trainer.py"}),
        "the trainer picks the fused loop by it; resume and warm start may change it; "
        "'jobs' is also the sweep's own count of parallel runs",
    ),
    "n_iter_no_change": (frozenset({"early_stopping.py"}), "early stopping's patience"),
    "warm_start": (
        frozenset({"cli/train.py", "runs/__init__.py", "runs/warm.py"}),
        "runs.warm_start (a run continuing a finished one) shares the word",
    ),
    "max_memory": (
        frozenset({"memory.py", "runs/folder.py", "runs/options.py", "sweep/tables.py"}),
        "the memory budget's home; runs check the plan against it before loading data, "
        "resume may change it, the tables leave it out of a run's recipe",
    ),
}  # fmt: skip


def names_in(tree: ast.AST) -> set[str]:
    """Identifiers of a module and its strings that are exactly an identifier."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            out.add(node.id)
        elif isinstance(node, ast.Attribute):
            out.add(node.attr)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, ast.keyword) and node.arg:
            out.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.alias):
            out.add(node.asname or node.name.rsplit(".", 1)[-1])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.isidentifier():
                out.add(node.value)
    return out


def source_index(src: Path) -> dict[str, set[str]]:
    """``{path relative to src: its names}`` for the files outside core/ and kernels/."""
    return {
        path.relative_to(src).as_posix(): names_in(ast.parse(path.read_text(encoding="utf-8")))
        for path in sorted(src.rglob("*.py"))
        if path.relative_to(src).parts[0] not in ("core", "kernels")
    }


def files_naming(names: set[str], index: dict[str, set[str]]) -> frozenset[str]:
    """The files outside :data:`HOME` that name any of ``names``."""
    return frozenset(f for f, found in index.items() if f not in HOME and found & names)


def _names(p) -> set[str]:
    return {p.name} | ({p.option} if p.option else set())


@pytest.fixture(scope="module")
def index() -> dict[str, set[str]]:
    return source_index(SRC)


@pytest.mark.parametrize("name", sorted(set(PARAMS) - set(SHARED_WORDS)))
def test_a_parameter_is_named_only_where_it_does_its_work(name, index):
    allowed, why = ALLOWED.get(name, (frozenset(), ""))
    assert why or not allowed
    found = files_naming(_names(PARAMS[name]), index)
    assert found <= allowed, (
        f"{name} is named in {sorted(found - allowed)}: a parameter should need only its "
        "declaration in params.py and the estimator's docstring (see docs/architecture.md)"
    )
    # the list only shrinks: an exception that no longer applies is removed
    assert allowed <= found, f"remove {sorted(allowed - found)} from ALLOWED[{name!r}]"


def test_the_lists_name_declared_parameters_only():
    assert set(ALLOWED) <= set(PARAMS) and set(SHARED_WORDS) <= set(PARAMS)
    assert not set(ALLOWED) & set(SHARED_WORDS)


def test_a_new_parameter_named_in_the_cli_or_the_run_options_is_caught(tmp_path):
    """The check itself: a parameter that the CLI or the run options spell out is found, one
    that only its declaration and docstring name is not; prose does not count."""
    for rel, text in {
        "params.py": 'Param("shiny_new", 1, Integer(1), "Shiny.", option="shiny")\n',
        "estimator.py": "def __init__(self, shiny_new=1):\n    self.shiny_new = shiny_new\n",
        "cli/train.py": 'EXTRA = {"shiny": {"callback": str}}\n',
        "runs/options.py": "def validate(self):\n    return self.shiny_new\n",
        "runs/folder.py": '"""Runs are shiny_new."""\n# shiny_new\nX = "a shiny_new run"\n',
        "core/step.py": "def step(shiny_new):\n    return shiny_new\n",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    found = files_naming({"shiny_new", "shiny"}, source_index(tmp_path))
    assert found == {"cli/train.py", "runs/options.py"}
