"""Before vs after RL (Fig. 8): pairs derived from the config or given, benchmarks both models have, the RL
training questions labelled in-distribution, the paper's Fig. 8 beside, missing evaluations said."""

from __future__ import annotations

import json

import pytest

from asearcher.errors import UserFacingError
from asearcher.report.before_after import build_table, write_before_after
from asearcher.report.runs import Run, derived_pairs, is_in_distribution

from .conftest import write_aggregate


def test_pairs_are_derived_from_the_rl_stage_or_given(runs):
    assert derived_pairs(Run.load(runs.config())) == [("tiny-sft", "tiny-rl")]
    assert derived_pairs(Run.load(runs.config(pairs=[["tiny-rl", "tiny-sft"]]))) == [("tiny-rl", "tiny-sft")]
    with pytest.raises(UserFacingError, match=r"report\.pairs\[0\]: 'nope' is not a model"):
        derived_pairs(Run.load(runs.config(pairs=[["tiny-sft", "nope"]])))


def test_values_difference_and_in_distribution_label(runs):
    t, panels = build_table(Run.load(runs.make()))
    rows = {(r.get("benchmark"), r.get("statistic")): r for r in t.rows}
    bam = rows[("Bamboogle", "avg@2")]
    assert (bam["before"], bam["after"], bam["diff"]) == pytest.approx((25.0, 50.0, 25.0))
    assert rows[("Bamboogle", "pass@2")]["after"] == pytest.approx(75.0)
    assert rows[("train-questions", "avg@2")]["in_distribution"] is True  # a "train-" name
    assert rows[("HotpotQA", "avg@2")]["in_distribution"] is False
    assert [b["benchmark"] for b in panels[0]["bars"]] == [
        "Bamboogle",
        "HotpotQA",
        "train-questions",
    ]  # in-dist last
    assert not t.missing
    assert is_in_distribution("train-anything", set()) and not is_in_distribution("HotpotQA", {"NQ"})


def test_in_distribution_from_the_card_or_the_config(runs):
    cfg = runs.make(in_distribution=["Bamboogle"])
    agg = runs.eval_path("tiny-rl", "HotpotQA")
    data = json.loads(agg.read_text())
    data["protocol"]["benchmark"]["in_distribution"] = (
        True  # what `asearcher eval` writes for train-questions
    )
    agg.write_text(json.dumps(data))
    t, _ = build_table(Run.load(cfg))
    labelled = {r["benchmark"] for r in t.rows if r.get("in_distribution")}
    assert labelled == {"Bamboogle", "HotpotQA", "train-questions"}


def test_the_papers_fig8_sits_beside_its_benchmarks(runs):
    cfg = runs.make()
    for model, score in (("tiny-sft", 0.0), ("tiny-rl", 1.0)):
        write_aggregate(runs.eval_path(model, "GAIA"), model, "GAIA", [[score]], metrics=("judge",))
    t, _ = build_table(Run.load(cfg))
    (gaia,) = [r for r in t.rows if r.get("benchmark") == "GAIA" and r.get("statistic") == "avg@1"]
    assert (gaia["before"], gaia["after"]) == (0.0, 100.0)
    assert (gaia["paper_before"], gaia["paper_after"]) == (43.7, 58.7)
    assert gaia["paper_diff"] == pytest.approx(15.0)


def test_missing_evaluations_and_a_run_without_pair(runs, tmp_path):
    cfg = runs.make()
    runs.eval_path("tiny-rl", "HotpotQA").unlink()
    t, _ = build_table(Run.load(cfg))
    assert t.missing == [f"missing: {runs.eval_path('tiny-rl', 'HotpotQA')}, made by rule eval"]
    assert not [r for r in t.rows if r.get("benchmark") == "HotpotQA"]

    none = runs.config(pairs=[])  # no pair at all: the table and the figure say what is missing
    paths = write_before_after(none, tmp_path / "out")
    assert {p.suffix for p in paths} == {".csv", ".md", ".png", ".pdf"}
    assert "missing: " in (tmp_path / "out" / "before_after_rl.md").read_text()
