"""Markdown table of deployable-network runs: each readout's validation-chosen epoch and its test
error, read from the runs' metrics.jsonl (complete or still running). A run without a validation
split (a final fit, ``--validation 0``) shows its last epoch, which nothing chose ("–" for val).

    python experiments/deployable/table.py runs/deployable/*/
    python experiments/deployable/table.py --epoch 39 runs/deployable/aug1-start30-h800x800-s*/

``--epoch N`` shows epoch N of every run instead (nothing chosen: to compare runs at one epoch).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def best(history: list[dict], key: str) -> dict:
    if history[-1][key] is None:  # no validation split: the model is the last epoch's
        return history[-1]
    return min(history, key=lambda r: (r[key], r["epoch"]))


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def main(paths: list[str], epoch: int | None = None) -> None:
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
        if epoch is not None:
            if len(hist) < epoch:
                continue  # has not reached that epoch
            p = d = hist[epoch - 1]
        else:
            p, d = best(hist, "val_error_p"), best(hist, "val_error_d")
        hidden = "-".join(map(str, opts["hidden"])) + (" +Sobel" if opts.get("filters") else "")
        secs = sum(r["seconds"] for r in hist) / len(hist)
        print(
            f"| {run.name} | {hidden} | {opts.get('reinforcement') or 'off'} | {len(hist)} | "
            f"{p['epoch']}, {pct(p['val_error_p'])}, {pct(p['test_error_p'])} | "
            f"{d['epoch']}, {pct(d['val_error_d'])}, {pct(d['test_error_d'])} | "
            f"{secs:.0f} |"
        )


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--epoch"]:
        main(args[2:], int(args[1]))
    else:
        main(args)
