"""Training QA loader: both real files from the mirror, plus made-up rows for the edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asearcher.data.trainset import load_trainset
from asearcher.utils.jsonl import DataError


def _write(tmp_path: Path, rows: list) -> Path:
    p = tmp_path / "train.jsonl"
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return p


def test_base35k_from_mirror(mirror_dir):
    recs = load_trainset(mirror_dir / "ASearcher-train-data" / "ASearcher-Base-35k.jsonl")
    assert len(recs) == 200
    r = recs[0]
    assert (r.id, r.question, r.answers, r.aug_answers, r.source, r.invalid) == (
        "5a77ec115542992a6e59dff7",
        "If Gallu is a demon Lilu is what?",
        ["a spirit"],
        [],
        "hotpotqa_train",
        False,
    )
    assert len({x.id for x in recs}) == 200
    assert r.origin.endswith("ASearcher-Base-35k.jsonl:1")


def test_lrm35k_from_mirror(mirror_dir):
    recs = load_trainset(mirror_dir / "ASearcher-train-data" / "ASearcher-LRM-35k.jsonl")
    assert len(recs) == 21
    assert recs[0].id == "1" and recs[0].answers == ["Bank for International Settlements (BIS)"]
    assert recs[0].source == "chain_qa_fuzzy" and recs[0].raw_ids == {"idx": "1", "id": "1"}
    assert recs[-1].id == "40000" and recs[-1].source is None  # later rows carry no source
    assert all(len(r.answers) == 1 for r in recs)


def test_normalisation_rules(tmp_path):
    p = _write(
        tmp_path,
        [
            {
                "qid": "q1",
                "question": "Q1?",
                "answer": ["A", "B"],
                "aug_answer": ["a."],
                "source": "compose_chain_qa",
            },
            {
                "qid": "q2",
                "question": "Q2?",
                "answer": ["The question is invalid"],
                "aug_answer": [],
                "source": "compose_chain_qa_invalid",
            },
            {
                "id": "7",
                "idx": 9,
                "question": "Q3?",
                "answer": 42,
            },  # idx wins over id; numbers become strings
            {"qid": "q1", "question": "Q1 again?", "answer": "A"},  # repeated id: kept, suffixed
            "",
            {"question": "no id?", "answer": "x"},  # no id field: file stem and line
        ],
    )
    recs = load_trainset(p)
    assert [r.id for r in recs] == ["q1", "q2", "9", "q1#2", "train:6"]
    assert recs[0].aug_answers == ["a."] and recs[0].answers == ["A", "B"]
    assert [r.invalid for r in recs] == [False, True, False, False, False]
    assert recs[2].answers == ["42"] and recs[2].raw_ids == {"idx": "9", "id": "7"}
    assert recs[3].to_dict()["answers"] == ["A"]
    assert len(load_trainset(p, limit=2)) == 2


@pytest.mark.parametrize(
    "row,pattern",
    [
        ({"qid": "a", "answer": ["x"]}, r"train.jsonl:2: field 'question' must be a non-empty string"),
        ({"qid": "a", "question": "q"}, r"train.jsonl:2: missing field 'answer'"),
        ({"qid": "a", "question": "q", "answer": []}, r"train.jsonl:2: field 'answer' is an empty list"),
        (
            {"qid": "a", "question": "q", "answer": ["x", {"y": 1}]},
            r"train.jsonl:2: field 'answer'\[1\] must be a",
        ),
        (
            {"qid": "a", "question": "q", "answer": ["x"], "aug_answer": "bad"},
            None,
        ),  # a string aug is one answer
        (
            {"qid": ["a"], "question": "q", "answer": ["x"]},
            r"train.jsonl:2: field 'qid' must be a string or int",
        ),
        ('{"qid": "a", "question": ', r"train.jsonl:2: malformed JSON"),
        ([1, 2], r"train.jsonl:2: expected a JSON object"),
    ],
)
def test_errors_name_file_line_field(tmp_path, row, pattern):
    p = _write(tmp_path, [{"qid": "ok", "question": "fine?", "answer": ["yes"]}, row])
    if pattern is None:
        assert load_trainset(p)[1].aug_answers == ["bad"]
        return
    with pytest.raises(DataError, match=pattern):
        load_trainset(p)


def test_truncated_last_line(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"qid": "a", "question": "q", "answer": ["x"]}\n{"qid": "b", "quest')
    with pytest.raises(DataError, match=r"t.jsonl:2: truncated line"):
        load_trainset(p)


def test_missing_file_says_how_to_fetch(tmp_path):
    with pytest.raises(DataError, match="fetch-data --release train-data"):
        load_trainset(tmp_path / "nope.jsonl")
