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


class RetrievalConfig(Section):
    enabled: bool | None = Field(
        None,
        description="Build the local index, check the retrieval server, and start it around the stages that "
        "search. null: on iff tools.backend is 'local' (which requires it on).",
    )
    backend: Literal["bm25", "e5"] = Field(
        "bm25", description="'bm25': Pyserini Lucene BM25; 'e5': dense E5 + FAISS (the paper's retriever)."
    )
    topk: int = Field(5, ge=1, description="Documents per search given to the agent (paper: 5).")
    threads: int = Field(2, ge=1, description="Threads for indexing and batched search.")
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
