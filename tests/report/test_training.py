"""Training dynamics (Fig. 6, 9, 10), keyword counts (Fig. 11) and QA-synthesis statistics (Fig. 5): the numbers
of the run's files in the tables, and missing inputs said in the table and the figure."""

from __future__ import annotations

import csv
import json

import pytest

from asearcher.report.dynamics import write_dynamics, write_keywords
from asearcher.report.synthesis import write_synthesis

from .conftest import metrics_row


def _csv(path):
    return list(csv.DictReader(path.open()))


def test_dynamics_table_follows_metrics_rows(runs, tmp_path):
    paths = write_dynamics(runs.make(), tmp_path)
    assert {p.name for p in paths} == {f"training_dynamics.{e}" for e in ("csv", "md", "png", "pdf")}
    rows = _csv(tmp_path / "training_dynamics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    third = metrics_row(3, 0.3)
    assert float(rows[2]["reward"]) == pytest.approx(0.3)
    for name in ("searches", "accesses", "tokens_per_traj"):
        for stat in ("min", "avg", "max"):
            assert float(rows[2][f"{name}_{stat}"]) == pytest.approx(
                third[f"rollout_{name}_{stat}"], abs=1e-3
            )
    assert float(rows[7]["wall_s"]) == pytest.approx(16.0)


def test_keywords_per_trajectory_per_step(runs, tmp_path):
    write_keywords(runs.make(), tmp_path)
    rows = {int(r["step"]): r for r in _csv(tmp_path / "keywords.csv")}
    assert set(rows) == {1, 5}  # versions 0 and 4
    # v4: "Wait, let me check. However wait" and "confirm" -> per trajectory over 2 trajectories
    assert float(rows[5]["wait"]) == pytest.approx(1.0) and float(rows[5]["check"]) == pytest.approx(0.5)
    assert float(rows[5]["confirm"]) == pytest.approx(0.5) and float(rows[1]["however"]) == pytest.approx(0.5)
    assert float(rows[1]["search"]) == 0.0  # the <search> tag is not the word


def test_keywords_list_from_config(runs, tmp_path):
    write_keywords(runs.make(keywords=["let me"]), tmp_path)
    rows = _csv(tmp_path / "keywords.csv")
    assert list(rows[0]) == ["step", "trajectories", "let me"] and float(rows[1]["let me"]) == pytest.approx(
        0.5
    )


def test_missing_training_outputs_are_said(runs, tmp_path):
    cfg = runs.make(train=False, rollouts=False)
    write_dynamics(cfg, tmp_path)
    write_keywords(cfg, tmp_path)
    train = runs.run_dir / "train"
    assert (
        _csv(tmp_path / "training_dynamics.csv")[0]["step"]
        == f"missing: {train}/metrics.jsonl, made by rule train"
    )
    assert _csv(tmp_path / "keywords.csv")[0]["step"].startswith(
        f"missing: {train}/rollouts/v*.jsonl.gz, made by"
    )
    assert (tmp_path / "training_dynamics.png").is_file() and (tmp_path / "keywords.pdf").is_file()


def test_synthesis_table_beside_the_papers_numbers(runs, tmp_path):
    write_synthesis(runs.make(), tmp_path)
    rows = {r["quantity"]: r for r in _csv(tmp_path / "synthesis.csv")}
    assert rows["selected"]["suite"] == "3" and rows["selected"]["paper"] == "25624"
    assert float(rows["mean injections"]["suite"]) == pytest.approx(1.333)
    assert float(rows["mean injections"]["paper"]) == pytest.approx(4.27)
    assert rows["seeds rejected: no_support"]["suite"] == "2"


def test_synthesis_without_selected_questions_or_without_stats(runs, tmp_path):
    cfg = runs.make()
    stats = runs.run_dir / "synth" / "stats.json"
    empty = json.loads(stats.read_text())
    empty["selected_questions"] = {k: {} for k in ("supporting_facts", "injections", "fuzzes")}
    empty["no_tool_accuracy"] = {"histogram": {}, "n": None}
    empty["note"] = "no question was selected"
    stats.write_text(json.dumps(empty))
    write_synthesis(cfg, tmp_path / "a")
    assert "no question was selected" in (tmp_path / "a" / "synthesis.md").read_text()
    stats.unlink()
    write_synthesis(cfg, tmp_path / "b")
    (row,) = _csv(tmp_path / "b" / "synthesis.csv")
    assert row["quantity"] == f"missing: {stats}, made by rule synth"
