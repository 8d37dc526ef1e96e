"""Serve /retrieve and /access over HTTP, compatible with the ASearcher / Search-R1 local retrieval server.

  POST /retrieve {"queries": [str], "topk": int|null, "return_scores": bool}
       -> {"result": [[doc, ...], ...]}   or, with return_scores, [[{"document": doc, "score": s}, ...], ...]
  POST /access   {"urls": [str]} -> {"result": [page or null, ...]}
  GET  /health   -> doc count, backend, uptime and batching statistics

Unlike upstream (one global lock, one request at a time), concurrent requests are gathered by a single
batcher into one multi-threaded batch search, so throughput grows with the number of clients. The bound
address is written to <addr-dir>/Host{ip}_IP{port}.txt (default dir: $RAG_SERVER_ADDR_DIR) and removed on
shutdown. Binds 127.0.0.1 unless --host says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from asearcher.config import RetrievalConfig, ServerConfig, load_config

from .address import ADDR_DIR_ENV, advertised_ip, remove_address, write_address

log = logging.getLogger(__name__)

try:
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    _loads = orjson.loads
    _JSONError: tuple[type[Exception], ...] = (orjson.JSONDecodeError,)
except ImportError:  # pragma: no cover
    import json

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False).encode()

    _loads = json.loads
    _JSONError = (json.JSONDecodeError, UnicodeDecodeError)


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Stats:
    """Counters shown by /health; the batch-size histogram shows whether batching happens."""

    BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

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
        }


class Batcher:
    """Gathers the queries of concurrent requests into one batch_search call in a worker thread.

    While one batch runs (pyjnius/FAISS release the GIL), new requests queue up; the next batch takes them
    all (up to max_batch queries). With several requests already waiting it also lingers batch_wait_ms for
    more, which fills batches under load without delaying a lone client.
    """

    def __init__(self, searcher: Any, cfg: ServerConfig, stats: Stats):
        self.searcher = searcher
        self.max_batch = cfg.max_batch
        self.wait_s = cfg.batch_wait_ms / 1000.0
        self.stats = stats
        self._pending: collections.deque = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="batch-search")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def search(self, queries: list[str], k: int) -> list[list[tuple[dict, float]]]:
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((queries, k, fut))
        self._wakeup.set()  # type: ignore[union-attr]
        return await fut

    def _take(self, batch: list, n: int) -> int:
        while self._pending and (n == 0 or n + len(self._pending[0][0]) <= self.max_batch):
            item = self._pending.popleft()
            if item[2].done():  # the client went away
                continue
            batch.append(item)
            n += len(item[0])
        return n

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()  # type: ignore[union-attr]
            self._wakeup.clear()  # type: ignore[union-attr]
            while self._pending:
                batch: list = []
                n = self._take(batch, 0)
                if len(batch) > 1 and n < self.max_batch and self.wait_s > 0:
                    await asyncio.sleep(self.wait_s)
                    n = self._take(batch, n)
                if not batch:
                    continue
                queries = [q for item in batch for q in item[0]]
                k = max(item[1] for item in batch)
                t0 = time.perf_counter()
                try:
                    results = await loop.run_in_executor(
                        self._executor, self.searcher.batch_search_scored, queries, k
                    )
                except Exception as e:
                    log.exception("batch search of %d queries failed", len(queries))
                    for item in batch:
                        if not item[2].done():
                            item[2].set_exception(e)
                    continue
                self.stats.record_batch(len(queries), len(batch), time.perf_counter() - t0)
                i = 0
                for item_queries, item_k, fut in batch:
                    part = results[i : i + len(item_queries)]
                    i += len(item_queries)
                    if not fut.done():
                        fut.set_result(part if item_k == k else [hits[:item_k] for hits in part])


def _field(body: dict, name: str) -> Any:
    if name not in body:
        raise BadRequest(422, f"missing field {name!r}")
    return body[name]


def _str_list(value: Any, name: str, max_items: int, max_chars: int | None) -> list[str]:
    if not isinstance(value, list):
        raise BadRequest(422, f"field {name!r} must be a list of strings, got {type(value).__name__}")
    if len(value) > max_items:
        raise BadRequest(422, f"field {name!r} has {len(value)} items; at most {max_items} per request")
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise BadRequest(422, f"{name}[{i}] must be a string, got {type(v).__name__}")
        if max_chars is not None and len(v) > max_chars:
            raise BadRequest(
                422,
                f"{name}[{i}] has {len(v)} characters; the limit is {max_chars} (retrieval.server.max_query_chars)",
            )
    return value


def create_app(searcher: Any, pages: Any | None, cfg: RetrievalConfig, *, on_started=None, on_stopped=None):
    """The FastAPI app. Handlers parse bodies themselves (orjson) to keep the hot path lean."""
    scfg = cfg.server
    stats = Stats()
    batcher = Batcher(searcher, scfg, stats)
    started = time.time()
    max_body = scfg.max_queries_per_request * (scfg.max_query_chars * 4 + 16) + 65536

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        if on_started:
            on_started()
        try:
            yield
        finally:
            if on_stopped:
                on_stopped()
            await batcher.stop()

    app = FastAPI(title="asearcher retrieval", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.stats = stats

    def json_response(obj: Any, status: int = 200) -> Response:
        return Response(_dumps(obj), status_code=status, media_type="application/json")

    def error(endpoint: str, e: BadRequest) -> Response:
        stats.errors[f"{endpoint}:{e.status}"] += 1
        return json_response({"error": e.message, "detail": e.message}, e.status)

    async def read_json(request: Request) -> dict:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            raise BadRequest(413, f"request body of {length} bytes is over the {max_body}-byte limit")
        body = await request.body()
        if len(body) > max_body:
            raise BadRequest(413, f"request body of {len(body)} bytes is over the {max_body}-byte limit")
        try:
            obj = _loads(body)
        except _JSONError as e:
            raise BadRequest(400, f"request body is not valid JSON: {e}") from None
        if not isinstance(obj, dict):
            raise BadRequest(422, f"request body must be a JSON object, got {type(obj).__name__}")
        return obj

    @app.post("/retrieve")
    async def retrieve(request: Request) -> Response:
        stats.requests["retrieve"] += 1
        try:
            body = await read_json(request)
            queries = _str_list(
                _field(body, "queries"), "queries", scfg.max_queries_per_request, scfg.max_query_chars
            )
            if not queries:
                raise BadRequest(422, "field 'queries' is empty; send at least one query")
            topk = body.get("topk")
            if topk is None:
                topk = cfg.topk
            elif isinstance(topk, bool) or not isinstance(topk, int):
                raise BadRequest(422, f"field 'topk' must be an integer or null, got {type(topk).__name__}")
            elif not 1 <= topk <= scfg.max_topk:
                raise BadRequest(
                    422,
                    f"field 'topk' must be between 1 and {scfg.max_topk} (retrieval.server.max_topk), got {topk}",
                )
            return_scores = body.get("return_scores", False)
            if return_scores is None:
                return_scores = False
            if not isinstance(return_scores, bool):
                raise BadRequest(
                    422, f"field 'return_scores' must be true or false, got {type(return_scores).__name__}"
                )
        except BadRequest as e:
            return error("retrieve", e)
        try:
            results = await batcher.search(queries, topk)
        except Exception as e:
            stats.errors["retrieve:500"] += 1
            return json_response({"error": f"search failed: {type(e).__name__}: {e}"}, 500)
        if return_scores:
            out = [[{"document": row, "score": score} for row, score in hits] for hits in results]
        else:
            out = [[row for row, _ in hits] for hits in results]
        return json_response({"result": out})

    @app.post("/access")
    async def access(request: Request) -> Response:
        stats.requests["access"] += 1
        try:
            body = await read_json(request)
            urls = _str_list(_field(body, "urls"), "urls", scfg.max_queries_per_request, None)
            if pages is None:
                raise BadRequest(404, "this server was started without --pages; /access is unavailable")
        except BadRequest as e:
            return error("access", e)
        return json_response({"result": [pages.lookup(u) for u in urls]})

    @app.get("/health")
    async def health() -> Response:
        return json_response(
            {
                "status": "ok",
                "backend": searcher.backend,
                "doc_count": searcher.num_docs,
                "pages": len(pages) if pages is not None else None,
                "uptime_s": round(time.time() - started, 3),
                "default_topk": cfg.topk,
                "stats": stats.as_dict(),
            }
        )

    return app


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index directory built by `asearcher index`")
    p.add_argument(
        "--corpus", help="wiki_corpus.jsonl (needed by a dense index; checked against a BM25 index)"
    )
    p.add_argument("--pages", help="wiki_webpages.jsonl for /access (without it /access answers 404)")
    p.add_argument("--host", help="bind address (default: retrieval.server.host = 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: retrieval.server.port; 0 = any free port)")
    p.add_argument(
        "--addr-dir", default=os.environ.get(ADDR_DIR_ENV),
        help=f"write Host{{ip}}_IP{{port}}.txt here while serving (default: ${ADDR_DIR_ENV})",
    )  # fmt: skip
    p.add_argument(
        "--ready-file", help="write ip:port to this file once the server answers (used by with-retrieval)"
    )
    p.add_argument(
        "--topk", type=int, help="default topk when a request sends null (default: retrieval.topk)"
    )
    p.add_argument("--threads", type=int, help="search threads per batch (default: retrieval.threads)")


def load_components(
    index: str | Path, corpus: str | Path | None, pages_path: str | Path | None, cfg: RetrievalConfig
):
    from asearcher.errors import UserFacingError

    from .index import read_meta
    from .searcher import open_searcher
    from .stores import PageStore

    meta = read_meta(index)
    if corpus is not None and meta["backend"] == "bm25":
        size = Path(corpus).stat().st_size if Path(corpus).exists() else None
        if size is None:
            raise UserFacingError(f"--corpus {corpus} does not exist")
        if size != meta["corpus"]["bytes"]:
            log.warning(
                "--corpus %s (%d bytes) is not the file this index was built from (%d bytes)",
                corpus,
                size,
                meta["corpus"]["bytes"],
            )
    searcher = open_searcher(index, cfg, corpus=corpus)
    pages = PageStore(pages_path, memory_max_bytes=cfg.memory_store_max_mb << 20) if pages_path else None
    return searcher, pages


def serve(
    searcher: Any,
    pages: Any,
    cfg: RetrievalConfig,
    *,
    addr_dir: str | None = None,
    ready_file: str | None = None,
) -> None:
    """Bind (port 0 = free port), advertise the address, serve until SIGINT/SIGTERM, then clean up."""
    import uvicorn

    scfg = cfg.server
    family = socket.AF_INET6 if ":" in scfg.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((scfg.host, scfg.port))
    sock.listen(2048)
    port = sock.getsockname()[1]
    ip = advertised_ip(scfg.host)
    written: list[Path] = []

    def on_started() -> None:
        if addr_dir:
            written.append(write_address(addr_dir, ip, port))
        if ready_file:
            Path(ready_file).write_text(f"{ip}:{port}")
        log.warning(
            "retrieval server on http://%s:%d (%s, %d docs)", ip, port, searcher.backend, searcher.num_docs
        )

    def on_stopped() -> None:
        for p in written:
            remove_address(p)

    app = create_app(searcher, pages, cfg, on_started=on_started, on_stopped=on_stopped)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,  # per-request log lines cost more than a BM25 search
        loop="uvloop" if _has("uvloop") else "asyncio",
        http="httptools" if _has("httptools") else "h11",
        backlog=2048,
        timeout_keep_alive=60,
    )
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        on_stopped()
        sock.close()


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides).retrieval
    if args.host is not None:
        cfg.server.host = args.host
    if args.port is not None:
        cfg.server.port = args.port
    if args.topk is not None:
        cfg.topk = args.topk
    if args.threads is not None:
        cfg.threads = args.threads
    searcher, pages = load_components(args.index, args.corpus, args.pages, cfg)
    serve(searcher, pages, cfg, addr_dir=args.addr_dir, ready_file=args.ready_file)
    return 0
