"""The paper's numbers as data: well-formed, named as the suite names benchmarks and metrics, complete per table,
and equal to the tables of the paper notes (every cell, when the notes are beside the repository)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from asearcher.errors import UserFacingError
from asearcher.eval.metrics import parse_metric_list
from asearcher.eval.registry import get_benchmark
from asearcher.report import paper

REPO = Path(__file__).resolve().parents[2]
NOTES = REPO.parent / "shared" / "docs" / "paper-notes.md"


def test_every_benchmark_and_metric_is_one_the_suite_uses():
    cells = paper.paper_cells()
    for c in cells:
        if c.benchmark != paper.AVERAGE:
            assert get_benchmark(c.benchmark).name == c.benchmark, c  # canonical names, not aliases
        assert parse_metric_list([c.metric], allow_model_metrics=True) == [c.metric], c
        assert c.statistic in paper.STATISTICS and c.source.startswith("paper v4"), c


@pytest.mark.parametrize(
    ("table", "methods", "cells"),
    [("table2", 8, 8 * 8 * 2), ("table3", 14, 14 * 8 * 2), ("table4", 8, 8 * 3 * 2), ("fig8", 3, 3 * 3 * 2)],
)
def test_each_table_is_complete_and_has_no_duplicate_cell(table, methods, cells):
    own = paper.table_cells(table)
    assert len(paper.methods(table)) == methods
    assert len(own) == cells
    keys = Counter((c.method, c.benchmark, c.metric, c.statistic) for c in own)
    assert max(keys.values()) == 1


@pytest.mark.parametrize(
    ("table", "method", "benchmark", "metric", "statistic", "value"),
    [
        ("table2", "ASearcher-Local-7B", "HotpotQA", "f1", "avg", 62.6),
        ("table2", "ASearcher-Local-14B", paper.AVERAGE, "judge", "avg", 63.6),
        ("table3", "ASearcher-Web-14B", "2Wiki", "judge", "avg", 80.7),
        ("table3", "Qwen-2.5-7B Direct", "MuSiQue", "judge", "avg", 1.9),
        ("table4", "ASearcher-Web-QwQ-v2", "xBench-DeepSearch", "judge", "pass@4", 75.0),
        ("table4", "Search-R1-32B", "GAIA", "judge", "avg@4", 28.6),
        ("fig8", "QwQ-32B prompt agent (before RL)", "Frames", "judge", "avg@4", 58.9),
    ],
)
def test_cells_read_as_the_notes_print_them(table, method, benchmark, metric, statistic, value):
    cell = paper.paper_value(table, method, benchmark, metric, statistic)
    assert cell is not None and cell.value == value


def test_the_extraction_artefact_carries_its_note_and_train_settings_are_kept():
    sic = paper.paper_value("table3", "Qwen-2.5-7B Direct", "MuSiQue", "judge", "avg")
    assert "PDF" in sic.note
    web7b = paper.paper_value("table3", "ASearcher-Web-7B", "NQ", "f1", "avg")
    assert web7b.train_setting == "web"


def _notes_cells() -> dict[tuple[str, str, str, str], float]:
    """(table, first benchmark word, row label, metric#) -> value, read from the notes' Markdown tables."""
    text = NOTES.read_text(encoding="utf-8")
    out = {}
    for table, title in (("table2", "### 7.1"), ("table3", "### 7.2"), ("table4", "### 7.3")):
        sec = text[text.index(title) : text.index("\n### ", text.index(title) + 1)]
        lines = [line for line in sec.splitlines() if line.startswith("|")]
        head = [h.strip().strip("*") for h in lines[0].strip("|").split("|")]
        for line in lines[2:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            for h, cell in zip(head[1:], cells[1:], strict=True):
                for i, v in enumerate(cell.split("/")):
                    out[(table, h, cells[0].replace("**", ""), str(i))] = float(
                        re.match(r"[0-9.]+", v.strip("*")).group()
                    )
    return out


@pytest.mark.skipif(not NOTES.is_file(), reason="the paper notes are not beside the repository")
def test_every_cell_of_tables_2_to_4_equals_the_notes():
    notes = _notes_cells()
    name = {"2Wiki": "2WikiMQA", "MuSiQue": "Musique", "xBench-DeepSearch": "xBench", paper.AVERAGE: "Avg"}
    checked = 0
    for c in paper.paper_cells():
        if c.table == "fig8":
            continue
        bench = name.get(c.benchmark, c.benchmark)
        if c.table == "table4":
            key = (c.table, f"{bench} {c.statistic.capitalize()}", None, "0")
        else:
            key = (c.table, bench, None, "0" if c.metric == "f1" else "1")
        label = c.method + (f" ({c.train_setting})" if c.train_setting else "")
        match = [
            v for (t, h, row, i), v in notes.items() if (t, h, i) == (key[0], key[1], key[3]) and row == label
        ]
        assert match == [c.value], (c, label, key)
        checked += 1
    assert checked == len(notes)


def test_a_malformed_data_file_is_an_error_naming_file_and_line(tmp_path):
    bad = tmp_path / "paper.csv"
    bad.write_text("# comment\n" + ",".join(paper.COLUMNS) + "\ntable2,M,,HotpotQA,f1,avg,sixty,src,\n")
    with pytest.raises(UserFacingError, match=r"paper\.csv:3: value 'sixty'"):
        paper.paper_cells(bad)
    bad.write_text(",".join(paper.COLUMNS) + "\ntable9,M,,HotpotQA,f1,avg,1,src,\n")
    with pytest.raises(UserFacingError, match=r"paper\.csv:2: table 'table9'"):
        paper.paper_cells(bad)


def test_unknown_paper_row_suggests_the_closest():
    with pytest.raises(
        UserFacingError,
        match=r"report\.paper_rows\.m: 'ASearcher-Local-7b'.*did you mean 'ASearcher-Local-7B'",
    ):
        paper.check_method("ASearcher-Local-7b", "report.paper_rows.m")


def test_figure_readings_and_keywords():
    kw = paper.paper_keywords()
    assert "wait" in kw["reflective"] and "previous" in kw["reference"]
    assert "5.5" in paper.figure_reading("fig9", "searches")
    assert paper.figure_reading("fig9", "no_such_key") == ""
