"""Batched search for the retrieval server, in two lanes so that one large request cannot stall small ones.

Main lane (the agents' one-query requests): while one batch runs (pyjnius/FAISS release the GIL), new requests
queue up; the next batch takes them all (up to max_batch queries) into one multi-threaded batch_search. With
several requests already waiting it also lingers batch_wait_ms for more, which fills batches under load without
delaying a lone client.

Bulk lane (requests over bulk_cost, or with more than chunk_queries queries): each request is searched chunk by
chunk (chunk_queries queries), the chunks of concurrent bulk requests taking turns (round-robin), in a second
worker thread at a lower CPU priority. A small request so waits for at most the main batch in progress, and a
bulk request for at most one chunk of each other bulk request. A request whose future was cancelled (its client
went away) has its remaining chunks dropped and counted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asearcher.config import ServerConfig

log = logging.getLogger(__name__)

# Niceness of the bulk lane's thread (and of the JVM search threads it starts, which inherit it on Linux).
BULK_NICE = 10


class Stats:
    """Counters shown by /health; the batch-size histogram shows whether batching happens."""

    BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
    CONNECTION_EVENTS = ("header_timeouts", "oversized_heads", "body_timeouts", "disconnects_mid_body")

    def __init__(self) -> None:
        self.requests = collections.Counter()
        self.errors = collections.Counter()
        self.queries = 0
        self.batched_requests = 0
        self.max_requests_per_batch = 0
        self.batches = 0
        self.max_batch = 0
        self.hist = collections.Counter()
        self.search_seconds = 0.0
        self.bulk_requests = 0
        self.bulk_chunks = 0
        self.dropped_requests = 0
        self.dropped_queries = 0
        self.connections = collections.Counter({k: 0 for k in self.CONNECTION_EVENTS})

    def record_batch(self, n: int, n_requests: int, seconds: float) -> None:
        self.batches += 1
        self.batched_requests += n_requests
        self.max_requests_per_batch = max(self.max_requests_per_batch, n_requests)
        self.queries += n
        self.max_batch = max(self.max_batch, n)
        self.search_seconds += seconds
        bucket = next((b for b in self.BUCKETS if n <= b), "more")
        self.hist[f"<={bucket}" if bucket != "more" else f">{self.BUCKETS[-1]}"] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "errors": dict(self.errors),
            "queries": self.queries,
            "batches": self.batches,
            "mean_batch_size": round(self.queries / self.batches, 3) if self.batches else 0.0,
            "max_batch_size": self.max_batch,
            "mean_requests_per_batch": round(self.batched_requests / self.batches, 3)
            if self.batches
            else 0.0,
            "max_requests_per_batch": self.max_requests_per_batch,
            "batch_size_histogram": dict(self.hist),
            "search_seconds": round(self.search_seconds, 3),
            "bulk": {"requests": self.bulk_requests, "chunks": self.bulk_chunks},
            "dropped": {"requests": self.dropped_requests, "queries": self.dropped_queries},
            "connections": dict(self.connections),
        }


class Job:
    """One request's search: results filled in chunk by chunk, and the future its handler awaits."""

    __slots__ = ("queries", "k", "fut", "bulk", "results", "pos")

    def __init__(self, queries: list[str], k: int, fut: asyncio.Future, bulk: bool):
        self.queries = queries
        self.k = k
        self.fut = fut
        self.bulk = bulk
        self.results: list = []
        self.pos = 0


def _lower_priority() -> None:
    # Linux niceness is per thread; elsewhere (or if refused) the bulk lane just runs at normal priority.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BULK_NICE)


class Batcher:
    def __init__(self, searcher: Any, cfg: ServerConfig, stats: Stats):
        self.searcher = searcher
        self.max_batch = cfg.max_batch
        self.wait_s = cfg.batch_wait_ms / 1000.0
        self.bulk_cost = cfg.bulk_cost
        self.chunk = cfg.chunk_queries
        self.stats = stats
        self._pending: collections.deque[Job] = collections.deque()
        self._bulk: collections.deque[Job] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._bulk_wakeup: asyncio.Event | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="batch-search")
        self._bulk_executor = ThreadPoolExecutor(
            1, thread_name_prefix="bulk-search", initializer=_lower_priority
        )
        # Lucene's searcher serves both lanes at once; other backends (a tokenizer, a GPU) take turns.
        self._lock = (
            contextlib.nullcontext() if getattr(searcher, "backend", "") == "bm25" else threading.Lock()
        )
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._bulk_wakeup = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run()), loop.create_task(self._run_bulk())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._executor.shutdown(wait=True)
        self._bulk_executor.shutdown(wait=True)

    def submit(self, queries: list[str], k: int, cost: int) -> Job:
        """Queue a search; await `job.fut` for the hits, cancel it to drop what has not run yet."""
        bulk = len(queries) > self.chunk or cost > self.bulk_cost
        job = Job(queries, k, asyncio.get_running_loop().create_future(), bulk)
        if bulk:
            self.stats.bulk_requests += 1
            self._bulk.append(job)
            self._bulk_wakeup.set()  # type: ignore[union-attr]
        else:
            self._pending.append(job)
            self._wakeup.set()  # type: ignore[union-attr]
        return job

    def _search(self, queries: list[str], k: int) -> list[list[tuple[dict, float]]]:
        with self._lock:
            return self.searcher.batch_search_scored(queries, k)

    def _drop(self, job: Job) -> None:
        self.stats.dropped_requests += 1
        self.stats.dropped_queries += len(job.queries) - job.pos

    def _take(self, batch: list[Job], n: int) -> int:
        while self._pending and (n == 0 or n + len(self._pending[0].queries) <= self.max_batch):
            job = self._pending.popleft()
            if job.fut.done():  # cancelled: the client went away
                self._drop(job)
                continue
            batch.append(job)
            n += len(job.queries)
        return n

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()  # type: ignore[union-attr]
            self._wakeup.clear()  # type: ignore[union-attr]
            while self._pending:
                batch: list[Job] = []
                n = self._take(batch, 0)
                if len(batch) > 1 and n < self.max_batch and self.wait_s > 0:
                    await asyncio.sleep(self.wait_s)
                    n = self._take(batch, n)
                if not batch:
                    continue
                queries = [q for job in batch for q in job.queries]
                k = max(job.k for job in batch)
                t0 = time.perf_counter()
                try:
                    results = await loop.run_in_executor(self._executor, self._search, queries, k)
                except Exception as e:
                    log.exception("batch search of %d queries failed", len(queries))
                    for job in batch:
                        if not job.fut.done():
                            job.fut.set_exception(e)
                    continue
                self.stats.record_batch(len(queries), len(batch), time.perf_counter() - t0)
                i = 0
                for job in batch:
                    part = results[i : i + len(job.queries)]
                    i += len(job.queries)
                    if not job.fut.done():
                        job.fut.set_result(part if job.k == k else [hits[: job.k] for hits in part])

    async def _run_bulk(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._bulk_wakeup.wait()  # type: ignore[union-attr]
            self._bulk_wakeup.clear()  # type: ignore[union-attr]
            while self._bulk:
                job = self._bulk.popleft()
                if job.fut.done():
                    self._drop(job)
                    continue
                part = job.queries[job.pos : job.pos + self.chunk]
                t0 = time.perf_counter()
                try:
                    hits = await loop.run_in_executor(self._bulk_executor, self._search, part, job.k)
                except Exception as e:
                    log.exception("bulk search of %d queries failed", len(part))
                    if not job.fut.done():
                        job.fut.set_exception(e)
                    continue
                self.stats.record_batch(len(part), 1, time.perf_counter() - t0)
                self.stats.bulk_chunks += 1
                job.results += hits
                job.pos += len(part)
                if job.pos == len(job.queries):
                    if not job.fut.done():
                        job.fut.set_result(job.results)
                elif job.fut.done():
                    self._drop(job)
                else:
                    self._bulk.append(job)  # its next chunk after one of every other bulk request
