"""`asearcher score`: one JSON object of means, per-sample rows, Avg@k/Pass@k, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asearcher.cli import main


def _write(tmp_path: Path, rows: list) -> Path:
    p = tmp_path / "pred.jsonl"
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return p


def _run(capsys, *argv) -> tuple[int, dict | None, str]:
    rc = main(["score", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 else None), err


def test_means_and_per_sample(tmp_path, capsys):
    p = _write(
        tmp_path,
        [
            {"id": "a", "prediction": "The Eiffel Tower", "answers": ["Eiffel Tower"]},  # f1 0.8, em 1, cem 1
            {"id": "b", "prediction": None, "answers": ["x"]},  # no answer: 0
            "",
            {"id": 3, "prediction": "Paris", "answers": "Paris"},  # 1, 1, 1
        ],
    )
    out = tmp_path / "scores.jsonl"
    rc, summary, _ = _run(capsys, p, "--metrics", "f1,em,cem,squad_f1", "--per-sample", out)
    assert rc == 0
    # f1 mean = (0.8 + 0 + 1) / 3 = 0.6; em = cem = squad_f1 = 2/3
    assert summary == pytest.approx({"n": 3, "f1": 0.6, "em": 2 / 3, "cem": 2 / 3, "squad_f1": 2 / 3})
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", 3]
    assert rows[0]["f1"] == pytest.approx(0.8) and rows[1]["em"] == 0.0
    assert "prediction" not in rows[0]  # scores only


def test_samples_give_avg_and_pass_at_k(tmp_path, capsys):
    right, wrong = "Paris", "Lyon"
    rows = []
    for q, hits in (("q1", {3}), ("q2", set()), ("q3", {0, 1, 2, 3})):
        for s in (3, 1, 0, 2):  # file order is not sample order
            rows.append(
                {"id": q, "sample": s, "prediction": right if s in hits else wrong, "answers": ["Paris"]}
            )
    rc, summary, _ = _run(capsys, _write(tmp_path, rows), "--metrics", "em")
    assert rc == 0
    # Avg@4 = (1 + 0 + 4) / 12 = 5/12; Pass@4 = (1 + 0 + 1) / 3
    assert summary["em.avg@4"] == pytest.approx(5 / 12) and summary["em"] == pytest.approx(5 / 12)
    assert summary["em.pass@4"] == pytest.approx(2 / 3)
    assert (summary["n"], summary["n_questions"], summary["k"]) == (12, 3, 4)
    # --k 2 takes samples 0 and 1: q1 misses both -> Pass@2 = 1/3
    rc, summary, _ = _run(capsys, _write(tmp_path, rows), "--metrics", "em", "--k", "2")
    assert summary["em.pass@2"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "rows,pattern",
    [
        ([{"id": "a", "prediction": "x"}], r"pred.jsonl:1: missing field 'answers'"),
        (
            [{"id": "a", "prediction": 5, "answers": ["x"]}],
            r"pred.jsonl:1: field 'prediction' must be a string",
        ),
        (
            [{"id": "a", "prediction": "x", "answers": []}],
            r"pred.jsonl:1: field 'answers' must be a non-empty",
        ),
        (["", {"id": "a", "prediction": "x", "answers": [1]}], r"pred.jsonl:2: field 'answers'"),
        ([{"id": "a", "prediction": "x", "answers": ["x"]}, "{oops"], r"pred.jsonl:2: malformed JSON"),
        (
            [
                {"id": "a", "prediction": "x", "answers": ["x"]},
                {"id": "a", "prediction": "y", "answers": ["x"]},
            ],
            r"pred.jsonl:2: duplicate id 'a' \(first at line 1\)",
        ),
        (
            [
                {"id": "a", "sample": 0, "prediction": "x", "answers": ["x"]},
                {"id": "b", "prediction": "x", "answers": ["x"]},
            ],
            r"pred.jsonl:2: field 'sample' must be on every row",
        ),
        (
            [{"id": "a", "sample": "0", "prediction": "x", "answers": ["x"]}],
            r"pred.jsonl:1: field 'sample' must be",
        ),
    ],
)
def test_bad_rows(tmp_path, capsys, rows, pattern):
    rc, _, err = _run(capsys, _write(tmp_path, rows))
    assert rc == 2
    assert __import__("re").search(pattern, err), err


def test_bad_metric_and_missing_file(tmp_path, capsys):
    p = _write(tmp_path, [{"id": "a", "prediction": "x", "answers": ["x"]}])
    rc, _, err = _run(capsys, p, "--metrics", "f1,bleu")
    assert rc == 2 and "--metrics: unknown metric(s) bleu" in err
    rc, _, err = _run(capsys, tmp_path / "missing.jsonl")
    assert rc == 2 and "does not exist" in err


def test_id_that_utf8_cannot_encode_is_written_escaped(tmp_path, capsys):
    """JSON input may carry a lone surrogate ("\\ud800") that UTF-8 cannot encode: the per-sample row keeps
    the id, written as the same JSON escape, so it reads back equal to the input id."""
    p = tmp_path / "pred.jsonl"
    p.write_text(
        '{"id": "q\\ud800", "prediction": "Paris", "answers": ["Paris"]}\n'
        '{"id": "caf\\u00e9", "prediction": "x", "answers": ["Paris"]}\n'
    )
    out = tmp_path / "scores.jsonl"
    rc, summary, err = _run(capsys, p, "--metrics", "em", "--per-sample", out)
    assert rc == 0, err
    assert summary == {"n": 2, "em": 0.5}
    text = out.read_text(encoding="utf-8")
    assert "\\ud800" in text and "café" in text  # only the unencodable row is escaped
    rows = [json.loads(line) for line in text.splitlines()]
    assert [r["id"] for r in rows] == ["q\ud800", "café"] and rows[0]["em"] == 1.0
    assert sorted(x.name for x in tmp_path.iterdir()) == ["pred.jsonl", "scores.jsonl"]


def test_per_sample_path_that_cannot_be_written_is_a_clear_error(tmp_path, capsys):
    p = _write(tmp_path, [{"id": "a", "prediction": "x", "answers": ["x"]}])
    (tmp_path / "dir").mkdir()
    before = sorted(x.name for x in tmp_path.rglob("*"))
    rc, _, err = _run(capsys, p, "--per-sample", tmp_path / "dir")
    assert rc == 2 and f"--per-sample {tmp_path / 'dir'}: is a directory" in err, err
    # under a file: the directory cannot be created
    rc, _, err = _run(capsys, p, "--per-sample", p / "scores.jsonl")
    assert rc == 2 and f"--per-sample {p / 'scores.jsonl'}: cannot write" in err, err
    assert sorted(x.name for x in tmp_path.rglob("*")) == before  # nothing partial left behind


def test_predictions_path_that_is_a_directory(tmp_path, capsys):
    rc, _, err = _run(capsys, tmp_path)
    assert rc == 2 and f"predictions file {tmp_path} is a directory" in err, err
