"""One `Searcher` interface over the BM25 (Lucene) and dense (FAISS) indexes built by `asearcher index`.

`batch_search(queries, k)` returns, per query, the top-k corpus rows (every field of the row, url included)
plus a "score" field. The server uses `batch_search_scored`, which returns (row, score) pairs without copying
rows: rows are shared, read-only dicts.
"""

from __future__ import annotations

import abc
import json
import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from asearcher.config import RetrievalConfig
from asearcher.errors import UserFacingError

from .index import LUCENE_DIR, read_meta

log = logging.getLogger(__name__)

try:
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover - orjson is optional
    _loads = json.loads

# Lucene refuses boolean queries with more than 1024 clauses; a bag-of-words query gets one clause per term.
MAX_QUERY_TERMS = 512


class Searcher(abc.ABC):
    backend: str
    num_docs: int

    @abc.abstractmethod
    def batch_search_scored(self, queries: list[str], k: int) -> list[list[tuple[dict, float]]]:
        """Top-k (row, score) per query, best first."""

    def batch_search(self, queries: list[str], k: int) -> list[list[dict]]:
        """Top-k rows per query, each a copy of the full corpus row with a "score" field."""
        return [
            [{**row, "score": score} for row, score in hits] for hits in self.batch_search_scored(queries, k)
        ]

    def search(self, query: str, k: int) -> list[dict]:
        return self.batch_search([query], k)[0]

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class _LRU:
    """Parsed rows by doc id: skips re-parsing the stored raw JSON of popular documents."""

    def __init__(self, size: int):
        self.size = size
        self._d: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> dict | None:
        with self._lock:
            row = self._d.get(key)
            if row is not None:
                self._d.move_to_end(key)
            return row

    def put(self, key: str, row: dict) -> None:
        with self._lock:
            self._d[key] = row
            if len(self._d) > self.size:
                self._d.popitem(last=False)


def _clip_query(q: str) -> str:
    words = q.split()
    return " ".join(words[:MAX_QUERY_TERMS]) if len(words) > MAX_QUERY_TERMS else q


class BM25Searcher(Searcher):
    """Lucene BM25 through Anserini's SimpleSearcher (the Java object behind pyserini's LuceneSearcher).

    We call it directly through pyjnius: `pyserini.search.lucene` also imports torch, transformers and
    onnxruntime (seconds of start-up for nothing BM25 needs). `batch_search` is the same multi-threaded call.
    pyjnius releases the GIL during it, so the server's event loop keeps running while Lucene searches.
    """

    backend = "bm25"

    def __init__(
        self,
        index_dir: str | Path,
        *,
        k1: float = 0.9,
        b: float = 0.4,
        threads: int = 2,
        cache_rows: int = 50_000,
    ):
        from .java import configure_java

        configure_java()
        from pyserini.pyclass import JArrayList, autoclass

        lucene_dir = Path(index_dir) / LUCENE_DIR
        if not lucene_dir.is_dir():
            raise UserFacingError(
                f"{index_dir} has no Lucene index ({lucene_dir} missing); rebuild it with `asearcher index`"
            )
        self._JArrayList = JArrayList
        self._searcher = autoclass("io.anserini.search.SimpleSearcher")(str(lucene_dir))
        self._searcher.set_bm25(float(k1), float(b))
        self.threads = threads
        self.num_docs = int(self._searcher.get_total_num_docs())
        self._rows = _LRU(cache_rows)

    def _row(self, hit: Any) -> dict:
        docid = hit.docid
        row = self._rows.get(docid)
        if row is None:
            raw = hit.lucene_document.get("raw")
            row = _loads(raw) if raw else {"id": docid, "contents": ""}
            self._rows.put(docid, row)
        return row

    def _batch(self, queries: list[str], k: int) -> list[list[Any]]:
        jq, jids = self._JArrayList(), self._JArrayList()
        for i, q in enumerate(queries):
            jq.add(q)
            jids.add(str(i))
        res = self._searcher.batch_search(jq, jids, int(k), int(self.threads))
        by_id = {e.getKey(): e.getValue() for e in res.entrySet().toArray()}
        return [list(by_id.get(str(i)) or []) for i in range(len(queries))]

    def batch_search_scored(self, queries: list[str], k: int) -> list[list[tuple[dict, float]]]:
        if not queries:
            return []
        clipped = [_clip_query(q) for q in queries]
        try:
            hits = self._batch(clipped, k)
        except Exception as e:  # one bad query must not fail the whole batch: retry one by one
            log.warning("batched Lucene search failed (%s); retrying query by query", e)
            hits = []
            for q in clipped:
                try:
                    hits.append(self._batch([q], k)[0])
                except Exception as e1:
                    log.warning("Lucene search failed for a query of %d chars: %s", len(q), e1)
                    hits.append([])
        return [[(self._row(h), float(h.score)) for h in hs] for hs in hits]

    def close(self) -> None:
        self._searcher.close()


class CorpusRows:
    """Corpus rows by row number (the dense index's FAISS ids): in memory when small, else by byte offset."""

    def __init__(self, corpus: Path, offsets: np.ndarray, memory_max_bytes: int):
        self.corpus = corpus
        self.offsets = offsets
        self._rows: list[dict] | None = None
        self._fh = None
        self._lock = threading.Lock()
        if corpus.stat().st_size <= memory_max_bytes:
            with open(corpus, "rb") as f:
                self._rows = [_loads(line) for line in f if line.strip()]
            if len(self._rows) != len(offsets):
                raise UserFacingError(
                    f"{corpus} has {len(self._rows)} rows but the index has {len(offsets)}: wrong --corpus?"
                )
        else:
            self._fh = open(corpus, "rb")

    def get(self, i: int) -> dict:
        if self._rows is not None:
            return self._rows[i]
        with self._lock:
            self._fh.seek(int(self.offsets[i]))  # type: ignore[union-attr]
            return _loads(self._fh.readline())  # type: ignore[union-attr]


class DenseSearcher(Searcher):
    backend = "e5"

    def __init__(
        self,
        index_dir: str | Path,
        cfg: RetrievalConfig,
        corpus: str | Path | None = None,
        device: str | None = None,
    ):
        import faiss

        from .dense import E5Encoder

        index_dir = Path(index_dir)
        meta = read_meta(index_dir)
        corpus = Path(corpus or meta["corpus"]["path"])
        if not corpus.is_file():
            raise UserFacingError(f"dense index {index_dir} needs its corpus {corpus}; pass --corpus")
        dense_cfg = cfg.dense.model_copy(
            update={
                k: meta["params"][k] for k in ("model", "max_length", "query_prefix") if k in meta["params"]
            }
        )
        self.encoder = E5Encoder(dense_cfg, device)
        faiss.omp_set_num_threads(cfg.threads)
        self.index = faiss.read_index(str(index_dir / "faiss.index"))
        self.docs = CorpusRows(corpus, np.load(index_dir / "doc_offsets.npy"), cfg.memory_store_max_mb << 20)
        self.num_docs = int(self.index.ntotal)

    def batch_search_scored(self, queries: list[str], k: int) -> list[list[tuple[dict, float]]]:
        if not queries:
            return []
        emb = self.encoder.encode(queries, is_query=True)
        scores, ids = self.index.search(emb, min(k, self.num_docs))
        return [
            [(self.docs.get(int(i)), float(s)) for s, i in zip(srow, irow, strict=True) if i >= 0]
            for srow, irow in zip(scores, ids, strict=True)
        ]


def open_searcher(
    index_dir: str | Path, cfg: RetrievalConfig | None = None, *, corpus: str | Path | None = None
) -> Searcher:
    """Open the index at `index_dir` with the backend recorded in its index_meta.json."""
    cfg = cfg or RetrievalConfig()
    meta = read_meta(index_dir)
    if meta["backend"] == "bm25":
        return BM25Searcher(index_dir, k1=cfg.bm25_k1, b=cfg.bm25_b, threads=cfg.threads)
    if meta["backend"] == "e5":
        return DenseSearcher(index_dir, cfg, corpus)
    raise UserFacingError(f"{index_dir}: unknown backend {meta['backend']!r} in index_meta.json")
