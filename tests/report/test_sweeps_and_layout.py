"""Sweeps (runs.json, the contract with the sweep rules) and the report's layout: every write function makes
exactly the files the Snakemake rules declare; tables write CSV and Markdown with missing rows."""

from __future__ import annotations

import csv
import json

import pytest

from asearcher.errors import UserFacingError
from asearcher.report import layout
from asearcher.report.before_after import write_before_after
from asearcher.report.dynamics import write_dynamics, write_keywords
from asearcher.report.main_results import write_main_results
from asearcher.report.runs import Missing
from asearcher.report.sweeps import load_sweep, write_sweep
from asearcher.report.synthesis import write_synthesis
from asearcher.report.tables import Table


def test_sweep_table_reads_each_run(runs, tmp_path):
    write_sweep(runs.sweep(), tmp_path, "run 'x'")
    rows = {r["value"]: r for r in csv.DictReader((tmp_path / "sweep.csv").open())}
    assert set(rows) == {"0", "2"}
    assert float(rows["0"]["steps_per_s"]) == pytest.approx(0.5)  # step 6 at wall_s 12
    assert float(rows["2"]["reward_end"]) > float(rows["0"]["reward_end"])
    assert (
        float(rows["2"]["Bamboogle_avg"]) == pytest.approx(37.5) and rows["2"]["metrics"] == "Bamboogle: f1"
    )
    assert "(run 'x')" in (tmp_path / "sweep.md").read_text()


def test_sweep_inputs_missing_or_malformed(runs, tmp_path):
    path = runs.sweep()
    data = json.loads(path.read_text())
    (runs.results / "sweeps" / "eta" / "v2" / "train" / "metrics.jsonl").unlink()
    write_sweep(path, tmp_path / "a")
    missing = [
        r for r in csv.DictReader((tmp_path / "a" / "sweep.csv").open()) if r["value"].startswith("missing")
    ]
    assert (
        len(missing) == 1 and "v2/train/metrics.jsonl, made by the sweep's train rule" in missing[0]["value"]
    )

    del data["parameter"]
    path.write_text(json.dumps(data))
    with pytest.raises(
        UserFacingError, match=r"runs\.json: not a sweep description \(parameter: Field required"
    ):
        load_sweep(path)

    paths = write_sweep(tmp_path / "nowhere" / "runs.json", tmp_path / "b")
    assert sorted(p.name for p in paths) == sorted(layout.files("sweep"))
    assert "sweep_nowhere" in (tmp_path / "b" / "sweep.md").read_text()


@pytest.mark.parametrize("complete", [True, False])
def test_notebooks_write_exactly_the_files_the_rules_declare(runs, tmp_path, complete):
    cfg = runs.make() if complete else runs.config()
    out = tmp_path / "report"
    evaluation = write_main_results(cfg, out) + write_before_after(cfg, out)
    training = write_dynamics(cfg, out) + write_keywords(cfg, out) + write_synthesis(cfg, out)
    assert sorted(p.name for p in evaluation) == sorted(layout.files("evaluation"))
    assert sorted(p.name for p in training) == sorted(layout.files("training"))
    assert all(p.stat().st_size > 0 for p in evaluation + training)


def test_table_csv_markdown_and_missing_rows(tmp_path):
    t = Table(title="T", columns=["a", "b"], caption="cap", md_columns=["a"])
    t.add(a="x|y", b=1.23456)
    t.add_missing(Missing("p/q.json", "rule r"))
    with pytest.raises(ValueError, match="unknown columns"):
        t.add(c=1)
    t.write(tmp_path / "t")
    assert (tmp_path / "t.csv").read_text() == 'a,b\nx|y,1.2\n"missing: p/q.json, made by rule r",\n'
    md = (tmp_path / "t.md").read_text()
    assert "| x\\|y |" in md and "| missing: p/q.json, made by rule r |" in md and "cap" in md
    assert t.missing == ["missing: p/q.json, made by rule r"]
