"""Published tables: runs tables (CSV) from finished sweeps, and docs generated from them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ebprop.cli import main
from ebprop.exceptions import DataError
from ebprop.metrics import model_memory
from ebprop.persist import load_model
from ebprop.sweep.tables import (
    RUN_COLUMNS,
    docs_markdown,
    embed_tables,
    read_runs_csv,
    run_rows,
)

ROOT = Path(__file__).resolve().parents[1]
DOCS = (
    "README.md",
    "docs/results.md",
    "docs/performance.md",
    "docs/conv.md",
    "docs/baselines.md",
    "docs/cli.md",
)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("tables") / "smoke"
    res = CliRunner().invoke(main, ["sweep", str(ROOT / "experiments" / "smoke.toml"),
                                    "--out", str(out), "--jobs", "1", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    return out


def test_report_csv_holds_each_run_and_its_provenance(sweep, tmp_path):
    res = CliRunner().invoke(main, ["report", str(sweep), "--format", "csv"])
    assert res.exit_code == 0, res.output
    (tmp_path / "t.csv").write_text(res.output)
    rows = read_runs_csv(tmp_path / "t.csv")
    summaries = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}
    assert len(rows) == 2 * len(summaries) == 8
    for r in rows:
        name = f"{r['group']}-s{r['seed']}"
        s = summaries[name]
        own = s["models"][r["readout"]]  # each readout at its own validation-chosen epoch
        assert (r["test_error"], r["val_error"], r["best_epoch"]) == (
            own["test_error"], own["val_error"], own["epoch"],
        )  # fmt: skip
        history = [json.loads(x) for x in (sweep / name / "metrics.jsonl").read_text().splitlines()]
        suffix = r["readout"][-1].lower()
        best = min(history, key=lambda h: (h[f"val_error_{suffix}"], h["epoch"]))
        assert best["epoch"] == r["best_epoch"] and best[f"test_error_{suffix}"] == r["test_error"]
        assert (r["ebprop_version"], r["git_commit"], r["vector_bits"]) == (
            s["ebprop_version"], s["git_commit"], s["vector_bits"],
        )  # fmt: skip
        # the deployed size by the rule `ebprop info` uses, from the saved model itself
        est = load_model(sweep / name / "model.npz").estimator
        assert r["bytes_deployed"] == sum(m["bytes_deployed"] for m in model_memory(est))
        assert r["network"] == "64-32-10"
        assert r["recipe"] == "--epochs 2 --batch-size 8 --patience 5"  # smoke.toml's settings


def test_report_markdown_over_a_sweep_is_the_table_its_csv_gives(sweep, tmp_path):
    md = CliRunner().invoke(main, ["report", str(sweep), "--format", "markdown"])
    csv_text = CliRunner().invoke(main, ["report", str(sweep), "--format", "csv"]).output
    (tmp_path / "t.csv").write_text(csv_text)
    from_csv = CliRunner().invoke(main, ["report", str(tmp_path / "t.csv"), "--format", "markdown"])
    assert md.exit_code == 0 and from_csv.exit_code == 0
    assert md.output == from_csv.output == docs_markdown(read_runs_csv(tmp_path / "t.csv"))
    # the binary line: each readout's mean ± std (ddof 1) over the seeds' summaries, here
    line = next(x for x in md.output.splitlines() if "| 64-32-10, binary EBP |" in x)
    cells = {}
    for readout in ("EBP-D", "EBP-P"):
        tests = [
            json.loads((sweep / f"ebp-binary-h32-f_none-do1-s{s}" / "summary.json").read_text())[
                "models"
            ][readout]["test_error"]
            for s in (0, 1)
        ]
        mean = f"{100 * np.mean(tests):.2f} ± {100 * np.std(tests, ddof=1):.2f}"
        cells[readout] = f"{mean} | {100 * tests[0]:.2f} / {100 * tests[1]:.2f}"
    assert f"| 0 1 | {cells['EBP-D']} | {cells['EBP-P']} |" in line


def test_runs_csv_refuses_other_files(tmp_path):
    (tmp_path / "a.csv").write_text("group,seed\nx,1\n")
    with pytest.raises(DataError, match="not a runs table"):
        read_runs_csv(tmp_path / "a.csv")
    row = ",".join(["g", "ebp", "EBP-P", "binary", "n", "", "none", "", "zero"] + [""] * 10)
    (tmp_path / "b.csv").write_text(",".join(RUN_COLUMNS) + "\n" + row + "\n")
    with pytest.raises(DataError, match=r"b.csv:2: seed = 'zero' is not a number"):
        read_runs_csv(tmp_path / "b.csv")


def test_report_format_usage_errors(sweep, tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["report", str(sweep)])
    assert res.exit_code == 2 and "give --out DIR" in res.output
    (tmp_path / "t.csv").write_text("x")
    res = runner.invoke(main, ["report", str(tmp_path / "t.csv"), "--format", "csv"])
    assert res.exit_code == 2 and "read with --format markdown" in res.output


def test_sizes_fall_back_to_the_layer_rule_for_old_summaries():
    s = {"options": {"hidden": [1500, 1500], "seed": 0, "weights": "binary",
                     "extra": {"group": "g"}},
         "n_features": 784, "n_weights": 784 * 1500 + 1500 * 1500 + 1500 * 10,
         "readouts": {"EBP-D": {"val_error": 0.1, "test_error": 0.2}}}  # fmt: skip
    (row,) = run_rows([s])
    assert row["network"] == "784-1500-1500-10"
    # 13, 24 and 24 words of 64 bits per row; float32 biases
    assert row["bytes_deployed"] == 1500 * 13 * 8 + 1500 * 24 * 8 + 10 * 24 * 8 + 4 * 3010


def test_embed_tables_rewrites_each_marked_block(tmp_path):
    rows = "g,ebp,EBP-D,binary,784-10,--epochs 4,none,,0,0.1,0.2,3,4,1.5,7840,1040,0.2.0,abc,512"
    (tmp_path / "t.csv").write_text(",".join(RUN_COLUMNS) + "\n" + rows + "\n")
    page = "intro\n<!-- table: t.csv -->\nstale\n<!-- end table -->\nafter\n"
    new = embed_tables(page, tmp_path)
    assert new.startswith("intro\n<!-- table: t.csv -->\n| network |")
    want = "| 784-10, binary EBP | `--epochs 4` | 0 | 20.00 | 20.00 | – | – | 10.00 | 3 | 1.5 "
    assert want + "| 1.0 KiB | 0.2.0, 512-bit |" in new
    assert new.endswith("<!-- end table -->\nafter\n")
    assert embed_tables(new, tmp_path) == new


@pytest.mark.parametrize("page", DOCS)
def test_docs_tables_equal_the_committed_csvs(page):
    text = (ROOT / page).read_text(encoding="utf-8")
    assert embed_tables(text, ROOT) == text, (
        f"{page}: a generated table differs from its CSV; run python -m ebprop.sweep.tables {page}"
    )


def test_results_page_embeds_its_tables_from_csvs_that_exist():
    text = (ROOT / "docs/results.md").read_text(encoding="utf-8")
    csvs = re.findall(r"<!-- table: ([^ ]+) -->", text)
    assert "experiments/mnist_deployable.csv" in csvs
    for name in csvs:
        read_runs_csv(ROOT / name)  # exists and is a runs table


def test_a_conv_run_is_named_by_its_architecture():
    s = {"options": {"hidden": [100], "architecture": "16C5-MP2-128", "seed": 0,
                     "weights": "binary", "extra": {"group": "c"}},
         "n_features": 784, "n_weights": 5000, "bytes_deployed": 4321,
         "readouts": {"EBP-D": {"val_error": 0.1, "test_error": 0.2}}}  # fmt: skip
    (row,) = run_rows([s])
    assert (row["network"], row["bytes_deployed"]) == ("784-16C5-MP2-128", 4321)
    del s["bytes_deployed"]
    assert run_rows([s])[0]["bytes_deployed"] is None  # no dense rule for conv layers


def test_runs_of_different_sweeps_with_one_group_name_stay_apart():
    # Each sweep names a group by what its own grid varies, so the plain runs of one sweep and
    # the reinforced runs of another share "g": gathered into one table, they are two rows.
    def summary(seed: int, epochs: int, err: float) -> dict:
        return {"options": {"hidden": [10], "seed": seed, "weights": "binary", "epochs": epochs,
                            "extra": {"group": "g"}},
                "n_features": 784, "n_weights": 7940,
                "readouts": {"EBP-D": {"val_error": err, "test_error": err}}}  # fmt: skip

    rows = run_rows([summary(0, 36, 0.3), summary(0, 30, 0.1), summary(1, 30, 0.2)])
    assert [(r["recipe"], r["seed"]) for r in rows] == [
        ("--epochs 30", 0),
        ("--epochs 30", 1),
        ("--epochs 36", 0),
    ]
    lines = docs_markdown(rows).splitlines()[2:]
    assert len(lines) == 2
    assert "`--epochs 30` | 0 1 | 15.00 ± 7.07" in lines[0]
    assert "`--epochs 36` | 0 | 30.00" in lines[1]
