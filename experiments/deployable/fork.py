"""Copy a run that is still in its plain-EBP phase and give the copy another reinforcement schedule.

    python experiments/deployable/fork.py SOURCE_RUN NEW_RUN SCHEDULE

Reinforcement with ``start=S`` multiplies nothing before epoch S (ρ = 1 is bit-identical to plain
EBP and draws no random numbers), so a run that has trained E ≤ S epochs is exactly the first E
epochs of a run with any schedule that starts at or after S. The copy is that run; resume it with
``ebprop train --resume NEW_RUN --epochs N``. Refused when the source has gone past S or the
schedule's start lies before the source's epoch count, or when the source's schedule has already
begun.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ebprop.core.reinforce import parse_reinforcement
from ebprop.fileio import read_json, write_json
from ebprop.runs.folder import RunFolder


def main(source: str, target: str, schedule: str) -> None:
    src, dst = Path(source), Path(target)
    run, copy = RunFolder(src), RunFolder(dst)
    options = read_json(run.options_path)
    epochs = len(run.read_metrics())
    old = parse_reinforcement(options.get("reinforcement"))
    new = parse_reinforcement(schedule)
    if old is not None and old.start < epochs:
        sys.exit(f"{src}: its reinforcement began at epoch {old.start:g}; fork an earlier copy")
    if new is None or new.start < epochs:
        sys.exit(f"{schedule!r} must start at or after epoch {epochs}, which {src} has run")
    if dst.exists():
        sys.exit(f"{dst} exists; choose another name")
    if not run.summary_path.is_file():
        sys.exit(f"{src}: no summary.json (is it still training?)")
    shutil.copytree(src, dst)
    options["reinforcement"] = schedule
    write_json(copy.options_path, options)
    copy.summary_path.unlink()  # the copy has not finished: resume treats it as running
    print(f"{dst}: copy of {src} at epoch {epochs}, reinforcement {schedule}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
