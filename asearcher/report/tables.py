"""A report table: rows of named columns, written as CSV and Markdown. A missing input is a row of its own
("missing: <path>, made by <rule>" in the first column), so a table never comes out silently empty."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asearcher.utils.atomic import atomic_write_text

from .runs import Missing


def fmt(value: Any, digits: int = 1) -> str:
    """A cell as text: numbers rounded (ints kept), None empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


@dataclass
class Table:
    title: str
    columns: list[str]
    caption: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    md_columns: list[str] | None = None  # the Markdown's columns (default: all); the CSV has every column
    digits: int = 1
    extra_md: list[str] = field(default_factory=list)  # further Markdown sections (e.g. the paper's table)

    def add(self, **row: Any) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise ValueError(f"table {self.title!r}: unknown columns {sorted(unknown)}")
        self.rows.append(row)

    def add_missing(self, missing: Missing, **row: Any) -> None:
        self.add(**{**row, self.columns[0]: missing.line()})

    @property
    def missing(self) -> list[str]:
        return [
            str(r[self.columns[0]])
            for r in self.rows
            if str(r.get(self.columns[0], "")).startswith("missing:")
        ]

    def csv_text(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        for r in self.rows:
            w.writerow([fmt(r.get(c), self.digits) for c in self.columns])
        return buf.getvalue()

    def markdown(self) -> str:
        cols = self.md_columns or self.columns
        out = [f"## {self.title}", ""]
        if self.caption:
            out += [self.caption, ""]
        if not self.rows:
            out += ["(no rows)", ""]
        else:
            out.append("| " + " | ".join(cols) + " |")
            out.append("|" + "---|" * len(cols))
            for r in self.rows:
                out.append("| " + " | ".join(_md_cell(fmt(r.get(c), self.digits)) for c in cols) + " |")
            out.append("")
        out += [f"- {n}" for n in self.notes]
        if self.notes:
            out.append("")
        for section in self.extra_md:
            out += [section, ""]
        return "\n".join(out).rstrip() + "\n"

    def write(self, stem: str | Path) -> list[Path]:
        """STEM.csv and STEM.md."""
        stem = Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        csv_path, md_path = stem.with_suffix(".csv"), stem.with_suffix(".md")
        atomic_write_text(csv_path, self.csv_text())
        atomic_write_text(md_path, self.markdown())
        return [csv_path, md_path]


def markdown_grid(title: str, header: list[str], rows: list[list[str]]) -> str:
    """A plain Markdown table (used for the paper's own tables, shown as the paper prints them)."""
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
