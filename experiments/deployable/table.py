"""Markdown table of deployable-network runs: each readout's validation-chosen epoch and its test
error, read from the runs' metrics.jsonl (complete or still running).

    python experiments/deployable/table.py runs/deployable/*/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def best(history: list[dict], key: str) -> dict:
    return min(history, key=lambda r: (r[key], r["epoch"]))


def main(paths: list[str]) -> None:
    print(
        "| run | hidden | reinforcement | epochs | EBP-P: epoch, val, test | "
        "EBP-D: epoch, val, test | s/epoch |"
    )
    print("|---|---|---|---:|---|---|---:|")
    for path in paths:
        run = Path(path)
        if not (run / "metrics.jsonl").is_file():
            continue
        opts = json.loads((run / "options.json").read_text())
        hist = [json.loads(line) for line in (run / "metrics.jsonl").open()]
        p, d = best(hist, "val_error_p"), best(hist, "val_error_d")
        hidden = "-".join(map(str, opts["hidden"])) + (" +Sobel" if opts.get("filters") else "")
        secs = sum(r["seconds"] for r in hist) / len(hist)
        print(
            f"| {run.name} | {hidden} | {opts.get('reinforcement') or 'off'} | {len(hist)} | "
            f"{p['epoch']}, {100 * p['val_error_p']:.2f}, {100 * p['test_error_p']:.2f} | "
            f"{d['epoch']}, {100 * d['val_error_d']:.2f}, {100 * d['test_error_d']:.2f} | "
            f"{secs:.0f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
