"""The paper's numbers as data: Tables 2, 3, 4 and Fig. 8 (data/paper_results.csv, one cell per line) and the
readings of its other figures (data/paper_figures.yaml)."""

from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from asearcher.errors import UserFacingError

DATA = Path(__file__).with_name("data")
PAPER_RESULTS = DATA / "paper_results.csv"
PAPER_FIGURES = DATA / "paper_figures.yaml"

TABLES = {
    "table2": "Table 2: local knowledge base with RAG",
    "table3": "Table 3: web search and browsing",
    "table4": "Table 4: GAIA, xBench-DeepSearch, Frames",
    "fig8": "Fig. 8: before vs after RL (QwQ-32B)",
}
# The paper's mean over a table's seven QA benchmarks (its "Avg" column).
AVERAGE = "Average"
QA_BENCHMARKS = ("2Wiki", "HotpotQA", "Bamboogle", "MuSiQue", "NQ", "TriviaQA", "PopQA")
HARD_BENCHMARKS = ("GAIA", "xBench-DeepSearch", "Frames")
STATISTICS = ("avg", "avg@4", "pass@4")
COLUMNS = ("table", "method", "train_setting", "benchmark", "metric", "statistic", "value", "source", "note")


@dataclass(frozen=True)
class PaperCell:
    table: str
    method: str
    train_setting: str
    benchmark: str
    metric: str
    statistic: str
    value: float  # percent
    source: str
    note: str


def _lines_without_comments(path: Path) -> list[tuple[int, str]]:
    return [
        (i, line)
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if not line.startswith("#")
    ]


@cache
def paper_cells(path: Path = PAPER_RESULTS) -> tuple[PaperCell, ...]:
    """Every cell of the paper data file; a malformed line is an error naming the file and line."""
    numbered = _lines_without_comments(Path(path))
    reader = csv.reader([line for _, line in numbered])
    header = next(reader, None)
    if tuple(header or ()) != COLUMNS:
        raise UserFacingError(f"{path}: header must be {','.join(COLUMNS)}, got {header}")
    cells = []
    for (lineno, _), row in zip(numbered[1:], reader, strict=True):
        where = f"{path}:{lineno}"
        if len(row) != len(COLUMNS):
            raise UserFacingError(f"{where}: expected {len(COLUMNS)} fields, got {len(row)}")
        d = dict(zip(COLUMNS, row, strict=True))
        if d["table"] not in TABLES:
            raise UserFacingError(f"{where}: table {d['table']!r} is not one of {', '.join(TABLES)}")
        if d["statistic"] not in STATISTICS:
            raise UserFacingError(
                f"{where}: statistic {d['statistic']!r} is not one of {', '.join(STATISTICS)}"
            )
        try:
            value = float(d.pop("value"))
        except ValueError:
            raise UserFacingError(f"{where}: value {row[COLUMNS.index('value')]!r} is not a number") from None
        cells.append(PaperCell(value=value, **d))
    return tuple(cells)


def methods(table: str) -> list[str]:
    """The paper's rows (methods) of one table, in the paper's order."""
    seen: dict[str, None] = {}
    for c in paper_cells():
        if c.table == table:
            seen.setdefault(c.method)
    return list(seen)


def all_methods() -> list[str]:
    return sorted({c.method for c in paper_cells()})


def check_method(name: str, where: str) -> str:
    """`name` when it is a row of the paper's tables; else an error naming `where` with the closest rows."""
    known = all_methods()
    if name in known:
        return name
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise UserFacingError(
        f"{where}: {name!r} is not a row of the paper's Tables 2-4{hint}. Rows: {', '.join(known)}"
    )


def paper_value(table: str, method: str, benchmark: str, metric: str, statistic: str) -> PaperCell | None:
    for c in paper_cells():
        if (c.table, c.method, c.benchmark, c.metric, c.statistic) == (
            table,
            method,
            benchmark,
            metric,
            statistic,
        ):
            return c
    return None


def table_cells(table: str) -> list[PaperCell]:
    return [c for c in paper_cells() if c.table == table]


def paper_columns(table: str) -> list[tuple[str, str, str]]:
    """(benchmark, metric, statistic) of one table, in the paper's column order."""
    seen: dict[tuple[str, str, str], None] = {}
    for c in table_cells(table):
        seen.setdefault((c.benchmark, c.metric, c.statistic))
    return list(seen)


@cache
def paper_figures(path: Path = PAPER_FIGURES) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserFacingError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise UserFacingError(f"{path}: expected a mapping of figure -> readings")
    return data


def paper_keywords() -> dict[str, list[str]]:
    """Fig. 11's keyword groups: {"reflective": [...], "reference": [...]}."""
    fig = paper_figures().get("fig11") or {}
    return {group: list(fig.get(group) or []) for group in ("reflective", "reference")}


def figure_reading(fig: str, *keys: str) -> str:
    """The paper's reading of a figure as one sentence, e.g. 'paper v4 Fig. 9 (...): searches about 1 -> 5.5.'"""
    data = paper_figures().get(fig) or {}
    parts = [f"{k.replace('_', ' ')} {data[k]}" for k in keys if k in data]
    return f"{data.get('source', fig)}: " + "; ".join(parts) + "." if parts else ""
