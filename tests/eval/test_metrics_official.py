"""`em` and `cem` equal upstream's scorers (evaluation/evaluate.py: em_check, cover_exact_match_score_1, as
search_eval_async.py calls them: max over the gold list, a missing answer scored as ""); `em_strict` and
`cem_strict` keep the project's refinements. Every value below is worked out by hand (see the comments)."""

from __future__ import annotations

import pytest

from asearcher.eval.metrics import METRICS, OFFICIAL_METRICS, parse_metric_list

NAMES = ("f1", "em", "cem", "em_strict", "cem_strict")

# (prediction, golds) -> (f1, em, cem, em_strict, cem_strict)
TABLE = [
    # --- answers that normalise to "" (SQuAD: punctuation and articles removed) ------------------------------
    # "" vs "": upstream em: "" == "" -> 1; cem: [""] all in [""] -> 1; strict: an empty gold never matches;
    # f1: both token sets empty -> 0
    ("", [""], (0, 1, 1, 0, 0)),
    # "the" -> " " -> "", "a" -> "": equal -> em 1, cem 1; f1 sets {the} vs {a} -> 0
    ("the", ["a"], (0, 1, 1, 0, 0)),
    # punctuation only: both "" after deleting punctuation; f1 turns it into spaces -> empty -> 0
    ("!!!", ["..."], (0, 1, 1, 0, 0)),
    # a real answer against an empty gold: "paris" != ""; cem: gold token "" not in ["paris"] -> 0
    ("Paris", ["the"], (0, 0, 0, 0, 0)),
    # whitespace-only prediction against a real gold: "" != "paris"
    ("   ", ["Paris"], (0, 0, 0, 0, 0)),
    # --- a missing prediction: upstream's driver scores it as "" ------------------------------------------
    (None, ["the"], (0, 1, 1, 0, 0)),
    (None, ["Paris"], (0, 0, 0, 0, 0)),
    # --- True / False: upstream EM does not map them; CEM (and our strict variants) read them as yes / no ----
    # em: "true" != "yes"; cem: "True" -> "yes" == gold; f1: {true} vs {yes} -> 0
    ("True", ["yes"], (0, 0, 1, 1, 1)),
    # the gold side is mapped too (cem, strict): "True" -> "yes"
    ("yes", ["True"], (0, 0, 1, 1, 1)),
    ("False", ["no"], (0, 0, 1, 1, 1)),
    # both "False": em "false" == "false"; cem "no" == "no"; f1 {false} == {false}
    ("False", ["False"], (1, 1, 1, 1, 1)),
    # only the exact strings are mapped: "true" and "True." stay themselves
    ("true", ["yes"], (0, 0, 0, 0, 0)),
    ("True.", ["yes"], (0, 0, 0, 0, 0)),
    # "true" vs "True": lower-cased equal everywhere; cem maps only the gold: ["true"] vs ["yes"] -> 0;
    # em_strict likewise compares "true" with "yes" -> 0
    ("true", ["True"], (1, 1, 0, 0, 0)),
    # --- yes / no -----------------------------------------------------------------------------------------
    ("Yes", ["yes"], (1, 1, 1, 1, 1)),
    ("no", ["yes"], (0, 0, 0, 0, 0)),
    # "yes, it is" -> em: "yes it is" != "yes"; cem: "yes" in [yes, it, is]; f1 {yes, it, is} vs {yes}:
    # P = 1/3, R = 1, F1 = 2*(1/3)/(4/3) = 1/2
    ("Yes, it is", ["yes"], (0.5, 0, 1, 0, 1)),
    # --- articles, punctuation, whitespace ------------------------------------------------------------------
    # em/cem: "eiffel tower" both; f1 {the, eiffel, tower} vs {eiffel, tower}: P = 2/3, R = 1 -> 0.8
    ("The Eiffel Tower", ["eiffel tower"], (0.8, 1, 1, 1, 1)),
    # SQuAD deletes '-': "jeanpaul sartre"; the paper's f1 makes it a space: {jean, paul, sartre} both sides
    ("Jean-Paul Sartre", ["Jean Paul Sartre"], (1, 0, 0, 0, 0)),
    # "an apple a day" -> "apple day" both; f1 {an, apple, a, day} vs {apple, day}: P = 2/4, R = 1 -> 2/3
    ("an apple a day", ["Apple day"], (2 / 3, 1, 1, 1, 1)),
    # tabs and newlines are whitespace
    ("New\tYork\n", ["new york"], (1, 1, 1, 1, 1)),
    # cover EM with a repeated gold token: [victor, victor] all in [victor]; f1 sets {victor} vs {victor}
    ("victor", ["Victor Victor"], (1, 0, 1, 0, 1)),
    # --- unicode: lower-casing is unicode aware, only ASCII punctuation is touched ---------------------------
    ("ÉCOLE Normale", ["école normale"], (1, 1, 1, 1, 1)),
    ("北京", ["北京"], (1, 1, 1, 1, 1)),
    # the curly apostrophe is not ASCII punctuation: "röntgen’s" is one token != "röntgen"
    ("Röntgen’s", ["Röntgen"], (0, 0, 0, 0, 0)),
    # --- several golds: the max over them ---------------------------------------------------------------------
    # em: "paris france" equals neither; cem: gold "paris" is covered; f1 vs "Paris": P = 1/2, R = 1 -> 2/3
    ("Paris France", ["Lyon", "Paris"], (2 / 3, 0, 1, 0, 1)),
    # an empty gold among others gives an empty prediction em/cem credit upstream, never in the strict variants
    ("", ["Lyon", "an"], (0, 1, 1, 0, 0)),
    ("Paris", ["", "Lyon"], (0, 0, 0, 0, 0)),
    # a single string gold is one answer, not a list of characters
    ("Paris", "Paris", (1, 1, 1, 1, 1)),
    ("", "", (0, 1, 1, 0, 0)),
    # no gold at all: 0 (upstream would fail on max([]))
    ("Paris", [], (0, 0, 0, 0, 0)),
]


@pytest.mark.parametrize(("prediction", "golds", "expected"), TABLE, ids=[repr(r[:2]) for r in TABLE])
def test_hand_computed_table(prediction, golds, expected):
    got = tuple(METRICS[n](prediction, golds) for n in NAMES)
    assert got == pytest.approx(expected, abs=1e-12)


def test_names_are_registered_and_parsed():
    assert {"f1", "em", "cem", "em_strict", "cem_strict", "squad_f1"} == set(METRICS)
    assert OFFICIAL_METRICS == {"f1", "em", "cem"}
    assert parse_metric_list("em_strict, cem_strict") == ["em_strict", "cem_strict"]


def test_benchmark_yaml_may_name_the_strict_metrics():
    from asearcher.eval.registry import BenchmarkSpec, get_benchmark

    raw = get_benchmark("Bamboogle").model_dump()
    raw["metrics"] = ["f1", "em_strict", "cem_strict", "judge"]
    assert BenchmarkSpec.model_validate(raw).metrics == ["f1", "em_strict", "cem_strict", "judge"]
