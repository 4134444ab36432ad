"""The user docs stay pages for users: short, no lab diary, no machine paths, the paper cited."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "src").rglob("*.py")])


@pytest.mark.parametrize(
    ("page", "most"), [("README.md", 200), ("docs/results.md", 250), ("docs/performance.md", 300)]
)
def test_pages_stay_short(page, most):
    assert len((ROOT / page).read_text(encoding="utf-8").splitlines()) <= most


def test_no_session_diary_and_no_machine_paths():
    bad = []
    for path in TEXT:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if re.search(r"\bsessions?\b", line, re.I) or re.search(
                r"(^|[\s`(])/(work|tmp)/", line
            ):
                bad.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:80]}")
    assert not bad, "\n".join(bad)


def test_the_paper_is_cited_and_the_quick_start_is_runnable():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for text in (readme, (ROOT / "docs/results.md").read_text(encoding="utf-8")):
        assert "Cheng, Soudry, Mao & Lan" in text and "1503.03562" in text
    assert "## Cite" in readme
    quick = readme.split("## Quick start", 1)[1].split("```")[1].splitlines()[1:]
    assert [c.split("#")[0].strip() for c in quick] == [
        "pip install -e . && ebprop train",
        'pip install -e ".[test]" && python -m pytest -q -p no:cacheprovider',
    ]


def _resolves(dotted: str) -> bool:
    """Whether ``dotted`` (``ebprop.x.y`` or ``x.y`` under ebprop) names a module, an attribute
    or a dataclass field (``kernels.ThreadChooser.log``) that exists."""
    import dataclasses
    import importlib

    parts = dotted.split(".")
    parts = parts if parts[0] == "ebprop" else ["ebprop", *parts]
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            if dataclasses.is_dataclass(obj) and name in {f.name for f in dataclasses.fields(obj)}:
                return True
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_the_modules_and_files_the_docs_name_exist():
    """A rename (train.py → trainer.py, kernels/engine.py → kernels/fused.py, fitting.py split)
    leaves no stale `kernels.engine.X`, `src/…/x.py` or `x.py` in the docs or docstrings."""
    import pkgutil

    import ebprop

    modules = {m.name for m in pkgutil.iter_modules(ebprop.__path__)} | {"ebprop"}
    files = {"py", "jsonl", "json", "md", "npz", "csv", "toml", "ebpb", "txt", "c", "h", "png"}
    dotted = re.compile(r"`~?(([A-Za-z_]\w*)(?:\.[A-Za-z_]\w*)+)")
    path = re.compile(r"`([\w./-]+\.py)\b")
    py_names = {p.name for d in ("src", "tests", "benchmarks") for p in (ROOT / d).rglob("*.py")}
    bad = []
    for page in TEXT:
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            where = f"{page.relative_to(ROOT)}:{n}"
            for m in dotted.finditer(line):
                name, first = m.groups()
                if first in modules and name.rsplit(".", 1)[1] not in files and not _resolves(name):
                    bad.append(f"{where}: {name}")
            for m in path.finditer(line):
                name = m.group(1)
                if "/" in name:
                    found = any((ROOT / base / name).exists() for base in ("", "src", "src/ebprop"))
                else:
                    found = name in py_names
                if not found:
                    bad.append(f"{where}: {name}")
    assert not bad, "\n".join(bad)


def test_the_archive_readme_lists_every_maintained_benchmark():
    """benchmarks/archive/README.md tells the archived one-offs from the maintained tools, which
    are every script in benchmarks/ itself."""
    readme = (ROOT / "benchmarks" / "archive" / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"`(\w+\.py)`", readme.split("The maintained tools", 1)[1]))
    assert listed == {p.name for p in (ROOT / "benchmarks").glob("*.py")}
