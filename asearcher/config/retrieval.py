"""Index and retrieval-server settings."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Section


class DenseConfig(Section):
    model: str = Field("intfloat/e5-base-v2", description="Encoder (hub id or local directory).")
    max_length: int = Field(256, ge=8, description="Max tokens per passage/query.")
    batch_size: int = Field(512, ge=1, description="Encoding batch size.")
    fp16: bool = Field(True, description="Encode in fp16 (GPU only; ignored on CPU).")
    passage_prefix: str = Field("passage: ", description="Prefix added to every passage (E5 convention).")
    query_prefix: str = Field("query: ", description="Prefix added to every query (E5 convention).")


class ServerConfig(Section):
    host: str = Field("127.0.0.1", description="Bind address; loopback by default.")
    port: int = Field(0, ge=0, le=65535, description="Port; 0 picks a free one.")
    max_batch: int = Field(256, ge=1, description="Most queries gathered into one batched search.")
    batch_wait_ms: float = Field(2.0, ge=0, description="How long the batcher waits to gather more queries.")
    max_topk: int = Field(100, ge=1, description="Largest topk a request may ask for.")
    max_query_chars: int = Field(4096, ge=1, description="Longest query accepted (longer ones get a 4xx).")
    max_queries_per_request: int = Field(1024, ge=1, description="Most queries in one request.")
    max_request_cost: int = Field(
        1_000_000,
        ge=1,
        description="Most work one /retrieve request may ask for: the sum over its queries of their terms "
        "(whitespace tokens, at most 512) times topk. Over it the request gets a 422. An agent's search (1 query, "
        "10-30 terms, topk 5-10) costs at most a few hundred; a batch of 1024 such queries at topk 10 about 300k.",
    )
    bulk_cost: int = Field(
        5000,
        ge=1,
        description="Requests costing more than this, or with more than chunk_queries queries, are searched in "
        "a separate bulk lane at lower CPU priority, chunk by chunk, so they never hold up small requests.",
    )
    chunk_queries: int = Field(
        16,
        ge=1,
        description="Queries per chunk of a bulk request; chunks of concurrent bulk requests take turns "
        "(round-robin), and the chunks of a client that disconnected are dropped.",
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A connection must send a whole request head (request line and headers) within this many "
        "seconds of opening, or of its first byte after a response; otherwise it is closed.",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A request body must arrive whole within this many seconds of its head (else 408).",
    )
    idle_timeout_s: float = Field(
        60.0, gt=0, description="An idle keep-alive connection is closed after this many seconds."
    )
    max_header_bytes: int = Field(
        65536,
        ge=1024,
        description="Largest request head; a bigger one gets a 431 and the connection is closed.",
    )


class RetrievalConfig(Section):
    enabled: bool | None = Field(
        None,
        description="Build the local index, check the retrieval server, and start it around the stages that "
        "search. null: on iff tools.backend is 'local' or tools.web.search_url is 'local' (which require it on).",
    )
    backend: Literal["bm25", "e5"] = Field(
        "bm25", description="'bm25': Pyserini Lucene BM25; 'e5': dense E5 + FAISS (the paper's retriever)."
    )
    topk: int = Field(5, ge=1, description="Documents per search given to the agent (paper: 5).")
    threads: int = Field(2, ge=1, description="Threads for indexing and batched search.")
    jvm_max_heap: str | None = Field(
        "1g",
        pattern=r"^[0-9]+[kKmMgG]?$",
        description="Pyserini's JVM heap limit (-Xmx) for the BM25 server and indexer, e.g. '1g', '512m'. "
        "null: the JVM default, a quarter of RAM. The indexer's Lucene memory buffer is half of it, so larger "
        "corpora index with fewer merges at a larger heap.",
    )
    bm25_k1: float = Field(0.9, gt=0, description="BM25 k1.")
    bm25_b: float = Field(0.4, ge=0, le=1, description="BM25 b.")
    memory_store_max_mb: int = Field(
        2048,
        ge=0,
        description="Page/corpus files up to this size are loaded into memory; larger ones (the 23-27 GB "
        "releases) are read through a cached byte-offset index.",
    )
    dense: DenseConfig = Field(default_factory=DenseConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
