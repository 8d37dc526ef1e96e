"""The E5-style dense path on CPU with a tiny, locally built encoder (random-init BERT + trained tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from asearcher.errors import UserFacingError

from asearcher.config import RetrievalConfig


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory, corpus_file: Path) -> Path:
    from asearcher.llm.tiny import build_tiny_encoder

    out = tmp_path_factory.mktemp("tiny_e5") / "encoder"
    return build_tiny_encoder(
        corpus_file, out, dim=32, layers=1, vocab_size=2000, passages=2000, max_positions=128
    )


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory, corpus_file: Path) -> Path:
    p = tmp_path_factory.mktemp("dense_corpus") / "corpus.jsonl"
    p.write_text("".join(line for _, line in zip(range(300), corpus_file.open(), strict=False)))
    return p


def _cfg(model: Path, **dense) -> RetrievalConfig:
    return RetrievalConfig(
        backend="e5", threads=1, dense={"model": str(model), "max_length": 64, "batch_size": 32, **dense}
    )


def test_encoder_is_mean_pooled_and_normalised(tiny_encoder: Path):
    from asearcher.retrieval.dense import E5Encoder

    enc = E5Encoder(_cfg(tiny_encoder).dense, device="cpu")
    short = "Uranus is a planet"
    alone = enc.encode([short], is_query=True)
    batched = enc.encode([short, "a much longer text " * 10], is_query=True)
    assert alone.shape == (1, 32) and alone.dtype == np.float32
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert np.allclose(alone[0], batched[0], atol=1e-5), (
        "padding changed the embedding: pooling ignores the mask"
    )
    # The prefix matters: the same text as query and as passage embeds differently.
    assert not np.allclose(alone[0], enc.encode([short], is_query=False)[0], atol=1e-4)


def test_dense_index_build_and_search(tiny_encoder: Path, small_corpus: Path, tmp_path: Path):
    from asearcher.retrieval.index import build_index, read_meta
    from asearcher.retrieval.searcher import DenseSearcher, open_searcher

    # With the passage prefix on queries too, a passage's own text must retrieve it first (score ~1).
    cfg = _cfg(tiny_encoder, query_prefix="passage: ")
    meta = build_index(small_corpus, tmp_path / "e5", cfg)
    assert meta["backend"] == "e5" and meta["doc_count"] == 300 and meta["dim"] == 32
    assert read_meta(tmp_path / "e5")["params"]["max_length"] == 64
    rows = [json.loads(line) for line in small_corpus.open()]
    s = open_searcher(tmp_path / "e5", cfg)
    assert isinstance(s, DenseSearcher) and s.num_docs == 300
    picks = rows[::37]
    hits = s.batch_search([r["contents"] for r in picks], 3)
    for r, h in zip(picks, hits, strict=True):
        assert h[0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert {k: v for k, v in h[0].items() if k != "score"} == r or h[1]["score"] == pytest.approx(
            1.0, abs=1e-4
        )
    # Offset-backed doc store (the mode used for the 23 GB corpus) gives the same rows.
    s2 = DenseSearcher(tmp_path / "e5", cfg.model_copy(update={"memory_store_max_mb": 0}))
    assert [d["id"] for d in s2.search(picks[0]["contents"], 3)] == [d["id"] for d in hits[0]]
    # Up to date: the same settings (another batch size or thread count) reuse it; other encoder settings do not.
    assert (
        build_index(small_corpus, tmp_path / "e5", _cfg(tiny_encoder, query_prefix="passage: ", batch_size=8))
        == meta
    )
    with pytest.raises(UserFacingError, match="not an up-to-date index"):
        build_index(
            small_corpus, tmp_path / "e5", _cfg(tiny_encoder, query_prefix="passage: ", max_length=32)
        )


def test_dense_index_served_over_http(tiny_encoder: Path, small_corpus: Path, tmp_path: Path):
    from asearcher.retrieval.index import build_index
    from asearcher.retrieval.searcher import open_searcher
    from asearcher.retrieval.service import running_server

    cfg = _cfg(tiny_encoder)
    build_index(small_corpus, tmp_path / "e5", cfg)
    queries = ["Uranus planet exploration", "bank founded in New York"]
    ref = open_searcher(tmp_path / "e5", cfg).batch_search(queries, 3)
    with running_server(tmp_path / "e5", small_corpus, retrieval=cfg) as srv:
        client = srv.client(max_retries=0)
        assert client.health()["backend"] == "e5"
        got = client.retrieve(queries, topk=3, return_scores=True)
        client.close()
    assert [[d["document"]["id"] for d in r] for r in got] == [[d["id"] for d in r] for r in ref]
    for r, want in zip(got, ref, strict=True):
        assert [d["score"] for d in r] == pytest.approx([d["score"] for d in want], abs=1e-4)
