"""Golden values for the string metrics, computed by hand (arithmetic in the comments)."""

from __future__ import annotations

import pytest

from asearcher.eval.metrics import (
    METRICS,
    cem,
    cem_strict,
    em,
    em_strict,
    f1,
    parse_metric_list,
    score_all,
    squad_f1,
)


def approx(x):
    return pytest.approx(x, abs=1e-12)


def test_registry_names():
    assert set(METRICS) == {"f1", "em", "cem", "em_strict", "cem_strict", "squad_f1"}
    assert parse_metric_list("f1, em") == ["f1", "em"]
    assert parse_metric_list(["f1", "judge"], allow_model_metrics=True) == ["f1", "judge"]
    with pytest.raises(ValueError, match="unknown metric.*bleu"):
        parse_metric_list("f1,bleu")
    with pytest.raises(ValueError, match="judge"):
        parse_metric_list("judge")  # not a string metric unless explicitly allowed


def test_articles_kept_by_paper_f1_removed_by_squad():
    # paper f1: {the, eiffel, tower} vs {eiffel, tower}: common 2, P = 2/3, R = 1, F1 = 2*(2/3)/(5/3) = 0.8
    assert f1("The Eiffel Tower", ["eiffel tower"]) == approx(0.8)
    # SQuAD drops "the": [eiffel, tower] vs [eiffel, tower] -> 1
    assert squad_f1("The Eiffel Tower", ["eiffel tower"]) == approx(1.0)
    assert em("The Eiffel Tower", ["eiffel tower"]) == 1.0
    assert cem("The Eiffel Tower", ["eiffel tower"]) == 1.0


def test_set_versus_multiset():
    # paper f1 is set based: {new, york} vs {new, york} -> 1
    assert f1("new york new york", "New York") == approx(1.0)
    # squad: pred [new, york, new, york] (4), gold [new, york] (2), overlap min-counts = 2
    # P = 2/4, R = 2/2, F1 = 2*0.5*1/1.5 = 2/3
    assert squad_f1("new york new york", "New York") == approx(2 / 3)


def test_punctuation_space_versus_delete():
    # paper: '-' becomes a space: {jean, paul, sartre} both sides -> 1
    assert f1("Jean-Paul Sartre", "Jean Paul Sartre") == approx(1.0)
    # SQuAD deletes '-': "jeanpaul sartre" != "jean paul sartre"
    assert em("Jean-Paul Sartre", "Jean Paul Sartre") == 0.0
    # cover: gold token "jean" is not among [jeanpaul, sartre]
    assert cem("Jean-Paul Sartre", "Jean Paul Sartre") == 0.0
    # squad f1: [jeanpaul, sartre] vs [jean, paul, sartre]: overlap 1, P = 1/2, R = 1/3
    # F1 = 2*(1/6)/(5/6) = 0.4
    assert squad_f1("Jean-Paul Sartre", "Jean Paul Sartre") == approx(0.4)
    # em: "the  beatles!" -> lower, drop '!', drop article -> "beatles"
    assert em("The  Beatles!", "beatles") == 1.0


def test_unicode():
    # lower-casing is unicode aware: {wilhelm, conrad, röntgen} vs {wilhelm, röntgen}: P = 2/3, R = 1 -> 0.8
    assert f1("Wilhelm Conrad Röntgen", "wilhelm RÖNTGEN") == approx(0.8)
    # only ASCII punctuation is replaced, as in the paper's code: "röntgen’s" (curly quote) != "röntgen"
    assert f1("Röntgen’s", "Röntgen") == 0.0
    assert f1("Röntgen's", "Röntgen") == approx(2 * 0.5 * 1 / 1.5)  # {röntgen, s} vs {röntgen}: P=1/2, R=1
    # CJK text without spaces is one token each side
    assert f1("北京", "北京") == 1.0 and em("北京", "北京") == 1.0


def test_empty_and_missing_predictions():
    for m in METRICS.values():
        assert m("", ["Paris"]) == 0.0
        assert m("   ", ["Paris"]) == 0.0
        assert m(None, ["Paris"]) == 0.0
        assert m("Paris", []) == 0.0
    # upstream: an empty prediction equals a gold that normalises to nothing (em, cem); f1 of empty sets is 0
    assert em("", ["the"]) == 1.0 and cem(None, ["!!"]) == 1.0 and f1("", ["..."]) == 0.0
    assert cem("anything", ["!!"]) == 0.0  # the empty gold token '' is not among ['anything']
    # the strict variants never give credit for a gold that normalises to nothing
    assert em_strict("", ["the"]) == 0.0 and cem_strict("", ["!!"]) == 0.0 and em_strict(None, ["the"]) == 0.0


def test_max_over_multiple_golds():
    # vs "Lyon": 0; vs "Paris": {paris, france} vs {paris}: P = 1/2, R = 1, F1 = 2/3 -> max 2/3
    assert f1("Paris France", ["Lyon", "Paris"]) == approx(2 / 3)
    assert em("paris", ["Lyon", "Paris"]) == 1.0
    # a single string gold is one answer, not a list of characters
    assert f1("Paris", "Paris") == 1.0


def test_yes_no_mapping():
    assert em("True", ["yes"]) == 0.0  # upstream's EM has no True/False mapping
    assert em_strict("True", ["yes"]) == 1.0
    assert cem("False", "no") == 1.0 and cem_strict("False", "no") == 1.0  # upstream's CEM maps them
    assert em_strict("true", ["yes"]) == 0.0  # only the exact strings True/False are mapped
    assert f1("True", ["yes"]) == 0.0  # the paper's eval F1 has no mapping


def test_cover_em():
    assert cem("He was Victor John Mature, an actor", "Victor Mature") == 1.0
    assert cem("Victor", "Victor Mature") == 0.0


def test_score_all():
    # f1: {the, beatles} vs {beatles}: P = 1/2, R = 1 -> 2/3
    assert score_all("the Beatles", ["Beatles"], ["f1", "em"]) == {"f1": approx(2 / 3), "em": 1.0}
