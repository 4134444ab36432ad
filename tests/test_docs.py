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
