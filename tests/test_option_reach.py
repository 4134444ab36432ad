"""How far ``reinforcement`` reaches (issue 34): at most :data:`MAX_HOPS` functions outside its
home, :mod:`ebprop.core.reinforce`, take the schedule and hand it to a function in another file.

Read from the source with :mod:`ast`. A function *holds the value* through a parameter named
``reinforcement``/``schedule``/``sched`` or annotated ``Reinforcement``, a parameter of a
function whose own name says ``schedule``/``reinforce``, an attribute ``.reinforcement`` or
``.reinforcement_``, a ``["reinforcement"]`` key, the result of a call whose name says
``schedule``/``reinforce``, or a local name assigned from any of these. It *hands it on* when a
call in it takes the value as an argument (also inside a dict, tuple or list) and the callee is
imported from another ebprop module, or when it calls one of the schedule's own methods
(``factors``, ``to_spec``, ...) or one of the functions of ``core/reinforce.py``, which take
schedules only (``same_request`` of two stored values). Options objects and parameter
dicts that carry every option alike (``**options.estimator_params()``) do not count: adding an
option does not touch them. Calls through a local variable of another module's class are not
followed (a known limit: keep such hand-overs explicit, through an imported name).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ebprop"

#: The most functions outside core/reinforce.py that may take the schedule and pass it to
#: another file (issue 34's target; there were 13 before it was met).
MAX_HOPS = 6
HOME = "ebprop.core.reinforce"
VALUE_NAMES = frozenset({"reinforcement", "schedule", "sched"})
VALUE_ATTRS = frozenset({"reinforcement", "reinforcement_"})
VALUE_KEYS = frozenset({"reinforcement", "reinforcement_schedule"})
NAME_WORDS = ("schedule", "reinforce")


def _module_name(src: Path, path: Path) -> str:
    parts = path.relative_to(src.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _home(src: Path) -> tuple[frozenset[str], frozenset[str]]:
    """The methods of :class:`ebprop.core.Reinforcement` and the public functions of its module:
    code that takes a schedule."""
    tree = ast.parse((src / "core" / "reinforce.py").read_text(encoding="utf-8"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Reinforcement")
    methods = frozenset(n.name for n in cls.body if isinstance(n, ast.FunctionDef))
    functions = frozenset(
        n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")
    )
    return methods, functions


@dataclass(frozen=True)
class Hop:
    """A function that takes the schedule and hands it to another file (``line``: the call)."""

    module: str
    function: str
    line: int
    call: str

    def __str__(self) -> str:
        return f"{self.module}:{self.function} (line {self.line}: {self.call})"


class _Module:
    """One module's imports from other ebprop modules and its own top-level names."""

    def __init__(self, name: str, tree: ast.Module, is_package: bool) -> None:
        self.name = name
        self.foreign: set[str] = set()  # names bound to another ebprop module or its objects
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = self._resolve(node, is_package)
                if target.split(".")[0] == "ebprop" and target != name:
                    self.foreign |= {a.asname or a.name for a in node.names}
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "ebprop" and a.name != name:
                        self.foreign.add((a.asname or a.name).split(".")[0])

    def _resolve(self, node: ast.ImportFrom, is_package: bool) -> str:
        if not node.level:
            return node.module or ""
        base = self.name.split(".")
        if not is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def is_foreign(self, func: ast.expr) -> bool:
        """Whether a call's callee lives in another ebprop module (by its root name)."""
        root = func
        while isinstance(root, ast.Attribute | ast.Subscript | ast.Call):
            root = root.func if isinstance(root, ast.Call) else root.value
        return isinstance(root, ast.Name) and root.id in self.foreign


def _says(name: str) -> bool:
    return any(word in name.lower() for word in NAME_WORDS)


def _call_name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


class _Function:
    """Which expressions of one function hold the schedule, and its hand-overs."""

    def __init__(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef, home: tuple[frozenset, frozenset]
    ) -> None:
        self.node, (self.methods, self.functions) = node, home
        args = node.args
        every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
        self.held: set[str] = set()
        for a in filter(None, every):
            annotation = ast.unparse(a.annotation) if a.annotation is not None else ""
            if a.arg in VALUE_NAMES or "Reinforcement" in annotation or _says(node.name):
                self.held.add(a.arg)
        self.body = list(self._own_nodes())
        for _ in range(3):  # names assigned from the value, and from those
            for n in self.body:
                if isinstance(n, ast.Assign | ast.AnnAssign) and n.value is not None:
                    if self.holds(n.value):
                        targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                        for t in targets:
                            self.held |= {x.id for x in ast.walk(t) if isinstance(x, ast.Name)}

    def _own_nodes(self):
        # the function's own code: nested functions and classes are functions of their own
        stack = list(ast.iter_child_nodes(self.node))
        while stack:
            n = stack.pop()
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            yield n
            stack.extend(ast.iter_child_nodes(n))

    def holds(self, e: ast.expr) -> bool:
        if isinstance(e, ast.Name):
            return e.id in self.held or e.id in VALUE_NAMES
        if isinstance(e, ast.Attribute):
            return e.attr in VALUE_ATTRS
        if isinstance(e, ast.Subscript):
            key = e.slice
            return isinstance(key, ast.Constant) and key.value in VALUE_KEYS
        if isinstance(e, ast.Call):
            name = _call_name(e.func)
            if name == "getattr" and len(e.args) >= 2:
                key = e.args[1]
                return isinstance(key, ast.Constant) and key.value in VALUE_ATTRS
            return _says(name)
        if isinstance(e, ast.BoolOp):
            return any(self.holds(v) for v in e.values)
        if isinstance(e, ast.IfExp):
            return self.holds(e.body) or self.holds(e.orelse)
        return False

    def carries(self, e: ast.expr) -> bool:
        """The value itself, or a dict/tuple/list literal with it inside."""
        if self.holds(e):
            return True
        if isinstance(e, ast.Starred):
            return self.carries(e.value)
        if isinstance(e, ast.Dict):
            return any(
                self.carries(v) or (isinstance(k, ast.Constant) and k.value in VALUE_KEYS)
                for k, v in zip(e.keys, e.values, strict=True)
            )
        if isinstance(e, ast.Tuple | ast.List):
            return any(self.carries(v) for v in e.elts)
        return False

    def hand_overs(self, module: _Module) -> list[ast.Call]:
        out = []
        for n in self.body:
            if not isinstance(n, ast.Call):
                continue
            args = [*n.args, *(k.value for k in n.keywords)]
            foreign = module.is_foreign(n.func)
            passes = foreign and any(self.carries(a) for a in args)
            home = foreign and _call_name(n.func) in self.functions  # they take schedules only
            method = (
                isinstance(n.func, ast.Attribute)
                and n.func.attr in self.methods
                and self.holds(n.func.value)
            )
            if passes or home or method:
                out.append(n)
        return out


def _qualified(tree: ast.Module):
    """(qualified name, function node) of every function and method, nested ones too."""
    stack: list[tuple[str, ast.AST]] = [("", tree)]
    while stack:
        prefix, node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    yield name, child
                stack.append((name + ".", child))


def hops(src: Path = SRC) -> list[Hop]:
    """Every function under ``src`` (but core/reinforce.py) that hands the schedule to another
    file, with its first such call."""
    home = _home(src)
    out = []
    for path in sorted(src.rglob("*.py")):
        name = _module_name(src, path)
        if name == HOME:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module = _Module(name, tree, path.name == "__init__.py")
        for qualname, node in _qualified(tree):
            calls = _Function(node, home).hand_overs(module)
            if calls:
                first = min(calls, key=lambda c: (c.lineno, c.col_offset))
                call = ast.unparse(first)
                call = call if len(call) <= 70 else call[:67] + "..."
                out.append(Hop(name.removeprefix("ebprop."), qualname, first.lineno, call))
    return out


def test_reinforcement_reaches_at_most_max_hops_functions_outside_its_home():
    found = hops()
    listing = "\n  ".join(map(str, found))
    assert len(found) <= MAX_HOPS, (
        f"{len(found)} functions take the reinforcement schedule and hand it to another file "
        f"(at most {MAX_HOPS}); pass plain values or let the schedule's home do it:\n  {listing}"
    )


def test_the_count_sees_each_way_of_handing_the_schedule_on(tmp_path):
    src = tmp_path / "ebprop"
    (src / "core").mkdir(parents=True)
    (src / "core" / "reinforce.py").write_text(
        (SRC / "core" / "reinforce.py").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (src / "core" / "__init__.py").write_text("from .reinforce import *\n")
    (src / "loop.py").write_text(
        "from .core import start_schedule\n"
        "from . import trainer\n"
        "def run(options, n):  # an attribute, to the schedule's home\n"
        "    return start_schedule(options.reinforcement, 3, n, 10)\n"
        "def rho(sched, n):  # one of the schedule's methods\n"
        "    return sched.factors(3, n)\n"
        "def handed(est):  # a name assigned from it, inside a dict, to another module\n"
        "    ran = getattr(est, 'reinforcement_', None)\n"
        "    return trainer.Trainer(options={'x': ran})\n"
        "def plain(options, n):  # holds nothing of the schedule\n"
        "    return trainer.Trainer(options.hidden, n)\n"
        "def local(schedule):  # hands it on within its file only\n"
        "    return helper(schedule)\n"
        "def helper(x):\n"
        "    return x\n",
        encoding="utf-8",
    )
    (src / "compare.py").write_text(
        "from .core import same_request\n"
        "def same(a, b):  # the home's functions take schedules only\n"
        "    return same_request(a, b)\n",
        encoding="utf-8",
    )
    found = {f"{h.module}:{h.function}" for h in hops(src)}
    assert found == {"loop:run", "loop:rho", "loop:handed", "compare:same"}
