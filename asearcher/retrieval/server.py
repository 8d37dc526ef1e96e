"""Serve /retrieve and /access over HTTP, compatible with the ASearcher / Search-R1 local retrieval server.

  POST /retrieve {"queries": [str], "topk": int|null, "return_scores": bool}
       -> {"result": [[doc, ...], ...]}   or, with return_scores, [[{"document": doc, "score": s}, ...], ...]
  POST /access   {"urls": [str]} -> {"result": [page or null, ...]}
  GET  /health   -> doc count, backend, uptime and batching statistics
  POST /search   {"q": str, "num": int} -> Serper-format results linking to GET /wiki/<Title> (the local web,
                 mounted with --pages; localweb.py)

Unlike upstream (one global lock, one request at a time), concurrent requests are gathered by a single
batcher into one multi-threaded batch search, so throughput grows with the number of clients; large requests are
searched in chunks in a second, lower-priority lane (batcher.py). Each request is bounded in size, cost and time
(server_limits.py), each connection in how long it may take to send a request head (server_conn.py). The bound
address is written to <addr-dir>/Host{ip}_IP{port}.txt (default dir: $RAG_SERVER_ADDR_DIR) and removed on
shutdown. Binds 127.0.0.1 unless --host says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from asearcher.config import RetrievalConfig, ServerConfig, load_config

from .address import ADDR_DIR_ENV, advertised_ip, remove_address, write_address
from .batcher import Batcher, Stats
from .server_conn import guarded_protocol
from .server_limits import BadRequest, dumps, max_body_bytes, parse_access, parse_retrieve, read_body

log = logging.getLogger(__name__)


def _jvm_max_heap() -> int | None:
    """The running JVM's heap limit in bytes (BM25 backend), or None without a JVM."""
    if "jnius" not in sys.modules:
        return None
    from jnius import autoclass

    return int(autoclass("java.lang.Runtime").getRuntime().maxMemory())


async def _client_gone(request: Request) -> None:
    # Once the body is read, the next ASGI message is http.disconnect, sent when the client closes.
    while (await request.receive())["type"] != "http.disconnect":
        pass


def create_app(searcher: Any, pages: Any | None, cfg: RetrievalConfig, *, on_started=None, on_stopped=None):
    """The FastAPI app. Handlers parse bodies themselves (orjson) to keep the hot path lean."""
    scfg = cfg.server
    stats = Stats()
    batcher = Batcher(searcher, scfg, stats)
    started = time.time()
    max_body = max_body_bytes(scfg)
    jvm_heap = _jvm_max_heap()

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

    def json_response(obj: Any, status: int = 200, headers: dict | None = None) -> Response:
        return Response(dumps(obj), status_code=status, media_type="application/json", headers=headers)

    def error(endpoint: str, e: BadRequest) -> Response:
        stats.errors[f"{endpoint}:{e.status}"] += 1
        if e.status == 408:
            stats.connections["body_timeouts"] += 1
        # A body left unread (413, 408) would keep arriving on this connection: close it after the answer.
        headers = {"connection": "close"} if e.status in (408, 413) else None
        return json_response({"error": e.message, "detail": e.message}, e.status, headers)

    def disconnected(endpoint: str, request: Request) -> Response:
        stats.connections["disconnects_mid_body"] += 1
        log.info("client %s disconnected in the middle of its %s request body", request.client, endpoint)
        return Response(status_code=400)  # nobody is there to read it

    async def read(request: Request) -> bytes:
        return await read_body(request, max_body, scfg.body_timeout_s)

    @app.post("/retrieve")
    async def retrieve(request: Request) -> Response:
        stats.requests["retrieve"] += 1
        try:
            req = parse_retrieve(await read(request), cfg)
        except BadRequest as e:
            return error("retrieve", e)
        except ClientDisconnect:
            return disconnected("/retrieve", request)
        job = batcher.submit(req.queries, req.topk, req.cost)
        gone = asyncio.ensure_future(_client_gone(request)) if job.bulk else None
        try:
            if gone is not None:  # bulk work is worth dropping when its client leaves
                await asyncio.wait((job.fut, gone), return_when=asyncio.FIRST_COMPLETED)
                if not job.fut.done():
                    return Response(status_code=499)  # the client is gone; nobody reads this
            results = await job.fut
        except Exception as e:
            stats.errors["retrieve:500"] += 1
            return json_response({"error": f"search failed: {type(e).__name__}: {e}"}, 500)
        finally:
            job.fut.cancel()  # no-op when done; otherwise the batcher drops what has not run
            if gone is not None:
                gone.cancel()
        if req.return_scores:
            out = [[{"document": row, "score": score} for row, score in hits] for hits in results]
        else:
            out = [[row for row, _ in hits] for hits in results]
        return json_response({"result": out})

    @app.post("/access")
    async def access(request: Request) -> Response:
        stats.requests["access"] += 1
        try:
            urls = parse_access(await read(request), cfg)
            if pages is None:
                raise BadRequest(404, "this server was started without --pages; /access is unavailable")
        except BadRequest as e:
            return error("access", e)
        except ClientDisconnect:
            return disconnected("/access", request)
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
                "jvm_max_heap_bytes": jvm_heap,
                "local_web": pages is not None,
                "stats": stats.as_dict(),
            }
        )

    if pages is not None:  # the local web: Serper-format /search and the pages as HTML
        from .localweb import mount_local_web

        mount_local_web(
            app, batcher=batcher, pages=pages, cfg=cfg, stats=stats, read=read, error=error,
            disconnected=disconnected, respond=json_response,
        )  # fmt: skip

    return app


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, help="index directory built by `asearcher index`")
    p.add_argument(
        "--corpus", help="wiki_corpus.jsonl (needed by a dense index; checked against a BM25 index)"
    )
    p.add_argument(
        "--pages",
        help="wiki_webpages.jsonl for /access and the local web (/search, /wiki/); without it /access answers 404",
    )
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
    if meta["backend"] == "bm25":
        from .java import configure_java

        configure_java(cfg.jvm_max_heap)  # before the searcher starts the JVM
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
    config = uvicorn_config(app, scfg)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        on_stopped()
        sock.close()


def uvicorn_config(app: Any, scfg: ServerConfig, http: str | None = None) -> Any:
    """The server's uvicorn settings; `http` is the parser, "httptools" (the default when installed) or "h11"."""
    import uvicorn

    http = http or ("httptools" if _has("httptools") else "h11")
    if http == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as protocol
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as protocol
    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,  # per-request log lines cost more than a BM25 search
        loop="uvloop" if _has("uvloop") else "asyncio",
        http=guarded_protocol(protocol, scfg, app.state.stats),
        backlog=2048,
        timeout_keep_alive=scfg.idle_timeout_s,  # type: ignore[arg-type]  (a float works: it goes to call_later)
    )


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
