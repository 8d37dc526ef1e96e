"""Tables 2-4: the suite's numbers beside the paper's row by row, the difference, the protocol card, the mapping
of models to paper rows, and the missing evaluations said as rows and in the figure."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from asearcher.errors import UserFacingError
from asearcher.report.main_results import build_tables, write_main_results
from asearcher.report.paper import QA_BENCHMARKS, paper_value
from asearcher.report.runs import Run
from asearcher.report.tables import Table

from .conftest import write_aggregate


def _rows(t: Table, **match) -> list[dict]:
    return [r for r in t.rows if all(r.get(k) == v for k, v in match.items())]


def test_suite_value_paper_value_and_difference_per_row(runs):
    tables = build_tables(Run.load(runs.make()))
    t2 = tables["table2"]
    (row,) = _rows(t2, model="tiny-rl", benchmark="Bamboogle", metric="f1")
    assert row["suite"] == pytest.approx(50.0)  # scores [[0.5, 1.0], [0.0, 0.5]]: mean 0.5
    assert row["statistic"] == "avg@2" and row["n"] == 2
    assert row["paper_row"] == "ASearcher-Local-7B" and row["comparison"] == "reference"
    assert row["paper"] == 55.0 and row["diff"] == pytest.approx(-5.0)
    # the protocol card of the evaluation
    assert row["corpus"].endswith("first 1000 passages") and row["retriever"] == "bm25" and row["topk"] == 3
    assert (row["search_backend"], row["judge"], row["k"], row["temperature"]) == ("local", "none", 2, 0.6)
    assert row["prompt_hash"] == "ab" * 6 and row["card"] == "C1"
    # no judge ran: the judge cell is there, empty, saying why
    (judge,) = _rows(t2, model="tiny-rl", benchmark="Bamboogle", metric="judge")
    assert judge["suite"] is None and judge["paper"] == 60.0 and "eval.judge.enabled" in judge["note"]
    # the RL training questions are not a paper benchmark: shown in before_after, not here
    assert not _rows(t2, benchmark="train-questions")


def test_paper_rows_map_a_model_and_unknown_names_are_errors(runs):
    tables = build_tables(Run.load(runs.make(paper_rows={"tiny-rl": "Search-R1-7B"}, reference_rows={})))
    (row,) = _rows(tables["table2"], model="tiny-rl", benchmark="HotpotQA", metric="f1")
    assert (row["paper_row"], row["comparison"], row["paper"]) == ("Search-R1-7B", "mapped", 57.6)
    (unmapped,) = _rows(tables["table2"], model="tiny-sft", benchmark="HotpotQA", metric="f1")
    assert (
        unmapped["paper"] is None and unmapped["diff"] is None
    )  # reference_rows {} leaves unmapped models alone
    with pytest.raises(UserFacingError, match=r"report\.paper_rows\.tiny-rl: 'Search-R1-7b'"):
        build_tables(Run.load(runs.config(paper_rows={"tiny-rl": "Search-R1-7b"})))


def test_settings_route_to_tables_and_k_differences_are_noted(runs):
    cfg = runs.make()
    write_aggregate(runs.eval_path("tiny-sft", "Bamboogle", "asearcher-localweb-top3"), "tiny-sft", "Bamboogle",
                    [[1.0]], web=True)  # fmt: skip
    write_aggregate(runs.eval_path("tiny-rl", "GAIA", "asearcher-web-top3"), "tiny-rl", "GAIA", [[1.0], [0.0]],
                    metrics=("judge",), web=True)  # fmt: skip
    tables = build_tables(Run.load(cfg))
    (web,) = _rows(tables["table3"], model="tiny-sft", metric="f1")
    assert web["setting"] == "asearcher-localweb-top3" and web["paper_row"] == "ASearcher-Web-7B"
    gaia = {r["statistic"]: r for r in _rows(tables["table4"], model="tiny-rl", benchmark="GAIA")}
    assert gaia["avg@1"]["suite"] == pytest.approx(50.0) and gaia["avg@1"]["paper"] == 58.7
    assert gaia["pass@1"]["paper"] == 74.7 and "pass@4" in gaia["pass@1"]["note"]


def test_the_average_over_the_seven_qa_benchmarks_sits_beside_the_papers(runs):
    cfg = runs.make(evals=False)
    for i, bench in enumerate(QA_BENCHMARKS):
        write_aggregate(runs.eval_path("tiny-rl", bench), "tiny-rl", bench, [[i / 10, i / 10]])
    (avg,) = _rows(build_tables(Run.load(cfg))["table2"], benchmark="Average", metric="f1")
    expected = sum(i * 10 for i in range(7)) / 7
    assert avg["suite"] == pytest.approx(expected)
    assert avg["diff"] == pytest.approx(
        expected - paper_value("table2", "ASearcher-Local-7B", "Average", "f1", "avg").value
    )


def test_missing_evaluations_are_rows_naming_path_and_rule(runs):
    cfg = runs.make()
    missing = runs.eval_path("tiny-sft", "HotpotQA")
    missing.unlink()
    tables = build_tables(Run.load(cfg))
    assert tables["table2"].missing == [f"missing: {missing}, made by rule eval"]
    assert not _rows(tables["table2"], model="tiny-sft", benchmark="HotpotQA")
    # nothing evaluated on the web or on GAIA/xBench/Frames: one row says what would make it
    (t4,) = tables["table4"].missing
    assert "GAIA" in t4 and "made by rule eval with the web tools" in t4
    assert tables["table3"].missing and "tools.backend: web" in tables["table3"].missing[0]


def test_write_makes_csv_markdown_and_figure_even_with_no_evaluation(runs, tmp_path):
    cfg = runs.make(evals=False)
    out = tmp_path / "report"
    paths = write_main_results(cfg, out)
    assert sorted(p.name for p in paths) == sorted(
        [f"{s}.{e}" for s in ("table2_local", "table3_web", "table4_hard") for e in ("csv", "md")]
        + ["main_results.png", "main_results.pdf"]
    )
    rows = list(csv.DictReader((out / "table2_local.csv").open()))
    assert len(rows) == 4 and all(r["model"].startswith("missing: ") for r in rows)  # 2 models x 2 benchmarks
    md = (out / "table4_hard.md").read_text()
    assert "missing: " in md and "The paper's Table 4" in md and "| ASearcher-Web-QwQ-v2 | 58.7/74.7 |" in md
    assert Path(out / "main_results.png").stat().st_size > 10_000
