"""``ebprop report``: one table over the finished runs of several sweep folders."""

from __future__ import annotations

import json

from click.testing import CliRunner

from ebprop.cli import main


def _summary(group: str, seed: int, test_p: float, weights: str = "binary") -> dict:
    return {
        "options": {"hidden": [20], "seed": seed, "weights": weights, "filters": None,
                    "input_dropout": None, "extra": {"group": group}},
        "val_error_p": test_p, "val_error_d": 0.5, "test_error_p": test_p, "test_error_d": 0.5,
        "best_epoch": 2, "epochs_run": 3, "seconds_per_epoch_mean": 1.0, "n_weights": 1000,
    }  # fmt: skip


def _write(run_dir, summary):
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps(summary))


def test_report_groups_seeds_across_sweep_folders(tmp_path):
    _write(tmp_path / "a" / "g-s0", _summary("g", 0, 0.02))
    _write(tmp_path / "b" / "g-s1", _summary("g", 1, 0.04))
    _write(tmp_path / "b" / "h-s0", _summary("h", 0, 0.10, "real"))
    (tmp_path / "b" / "unfinished").mkdir()  # no summary.json: ignored
    out = tmp_path / "report"
    res = CliRunner().invoke(
        main,
        ["report", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out), "--title", "both"],
    )
    assert res.exit_code == 0, res.output
    assert "3 finished runs" in res.output
    md = (out / "results.md").read_text()
    assert md.startswith("# both")
    # seeds 0 and 1 of group g pooled: mean 3.00 %, std (ddof 1) 1.41 %
    assert "| g | EBP-P | binary | 20 | none | – | 2 | 3.00 ± 1.41 |" in md
    assert "| h | EBP-P | real |" in md
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_refuses_a_folder_without_finished_runs(tmp_path):
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(main, ["report", str(tmp_path / "empty"), "-o", str(tmp_path / "o")])
    assert res.exit_code != 0
    assert "no finished run" in res.output
