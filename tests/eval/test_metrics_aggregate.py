"""Avg@k / Pass@k and the sample seeds."""

from __future__ import annotations

import random

import pytest

from asearcher.eval.aggregate import at_k, seeds_for


def test_avg_and_pass_by_hand():
    scores = {
        "q1": [1.0, 0.0, 0.0, 0.0],
        "q2": [0.0, 0.0, 0.0, 0.0],
        "q3": [0.5, 1.0, 0.5, 0.5],
    }
    triples = [(q, i, s) for q, ss in scores.items() for i, s in enumerate(ss)]
    random.Random(0).shuffle(triples)  # file order must not matter
    r = at_k(triples, 4)
    # Avg@4 = (1 + 0 + 2.5) / 12 = 0.291666..; Pass@4 = (1 + 0 + 1) / 3
    assert r.avg == pytest.approx(3.5 / 12)
    assert r.pass_ == pytest.approx(2 / 3)
    assert (r.n_questions, r.n_scores, r.n_incomplete) == (3, 12, 0)
    assert r.as_dict("f1") == {"f1.avg@4": r.avg, "f1.pass@4": r.pass_}


def test_first_k_by_sample_index_not_file_order():
    # samples 0..5; only sample 5 is right. Written in reverse, so file order would put it first.
    triples = [("q", i, 1.0 if i == 5 else 0.0) for i in reversed(range(6))]
    assert at_k(triples, 4).pass_ == 0.0
    assert at_k(triples, 6).pass_ == 1.0
    assert at_k(triples).k == 6  # default: most samples of any question
    # Pass@2 over q: samples 0,1 -> max 0; Avg@2 = 0
    assert at_k(triples, 2).avg == 0.0


def test_incomplete_and_duplicates():
    r = at_k([("a", 0, 1.0), ("a", 1, 0.0), ("b", 0, 0.0)], 2)
    # a: mean over 2 samples, b has only one: avg = (1 + 0 + 0) / 3, pass = (1 + 0) / 2
    assert r.avg == pytest.approx(1 / 3) and r.pass_ == 0.5 and r.n_incomplete == 1
    with pytest.raises(ValueError, match="sample 0 twice"):
        at_k([("a", 0, 1.0), ("a", 0, 0.0)])
    with pytest.raises(ValueError):
        at_k([])


def test_seeds_for():
    s = seeds_for(1, 4)
    assert len(set(s)) == 4 and s[0] == 1
    assert s == seeds_for(1, 4)  # deterministic
    assert seeds_for(1, 8)[:4] == s  # sample i keeps its seed when k grows
    assert seeds_for(2, 4) != s
    assert all(0 <= x <= 10_000_000 for x in s[1:])
    with pytest.raises(ValueError):
        seeds_for(1, 0)
