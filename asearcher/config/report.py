"""The report: the paper's tables and figures regenerated from a run's outputs (papermill notebooks, docs/report.md)."""

from __future__ import annotations

from pydantic import Field, field_validator

from .base import Section

# The paper's own method in each table, compared with a suite model that report.paper_rows does not map.
DEFAULT_REFERENCE_ROWS = {
    "table2": "ASearcher-Local-7B",
    "table3": "ASearcher-Web-7B",
    "table4": "ASearcher-Web-QwQ-v2",
}


class ReportConfig(Section):
    enabled: bool = Field(
        True,
        description="Run the report notebooks at the end of the DAG (tables and figures under results/report/).",
    )
    paper_rows: dict[str, str] = Field(
        default_factory=dict,
        description="Suite model name (a key of `models`) -> the paper's row it reproduces (a method of Tables 2-4, "
        "e.g. 'ASearcher-Local-7B'): its results are set beside that row's numbers. Names are checked against "
        "the paper data (asearcher/report/data/paper_results.csv) when the report runs.",
    )
    reference_rows: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_REFERENCE_ROWS),
        description="Per paper table (table2, table3, table4): the paper row a model missing from paper_rows is "
        "compared with, labelled as a reference ({} = no paper value for unmapped models).",
    )
    pairs: list[list[str]] | None = Field(
        None,
        description="Before/after-RL pairs [before, after] of model names (Fig. 8). null: derived, the model whose "
        "path is the RL stage's starting point paired with the one whose path is its output.",
    )
    in_distribution: list[str] = Field(
        default_factory=list,
        description="Benchmarks labelled in-distribution in the before/after figure (besides those whose name "
        "starts with 'train-'): evaluations on the RL training questions.",
    )
    keywords: list[str] | None = Field(
        None,
        description="Words counted in the generated text of the saved training rollouts (Fig. 11). null: the "
        "paper's reflective and reference words.",
    )

    @field_validator("pairs")
    @classmethod
    def _two_models(cls, v: list[list[str]] | None) -> list[list[str]] | None:
        for i, pair in enumerate(v or []):
            if len(pair) != 2:
                raise ValueError(f"pairs[{i}]: expected [before, after], got {pair!r}")
        return v
