"""The local web: the retrieval server as a tiny search engine plus the Wikipedia pages it links to.

The web tools (tools.backend: web) talk to a Serper-compatible search API and read pages over HTTP. For the CPU
default and the tests, the retrieval server plays both parts over the local corpus, on 127.0.0.1:

  POST /search {"q": str, "num": int (default 10)}
       -> {"searchParameters": {"q", "num", "type", "engine"},
           "organic": [{"title", "link", "snippet", "position"}, ...]}
  GET  /wiki/<Title> -> the mirror's page as simple HTML (<title>, <h1>, one <p> per paragraph); 404 if unknown

A search runs through the server's batcher under the same request limits as /retrieve (query length, topk,
cost); a bad request gets the same JSON error body ({"error", "detail"}). Each hit is one corpus passage: its
title comes from the passage's Wikipedia URL (else its quoted first line), its snippet is the passage text and its
link is this server's own /wiki/<Title> URL, built from the request's Host header, so the links work on whatever
port the server was given. The routes are mounted when the server loads pages (--pages).
"""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from asearcher.config import RetrievalConfig

from .server_limits import BadRequest, decode_json_object, query_cost
from .urls import title_of

#: the `engine` the searchParameters name (a real Serper reply says "google")
ENGINE = "asearcher-local"
#: Serper's default number of results
DEFAULT_NUM = 10
# A Host header is echoed into links: only host names, IPv4 and bracketed IPv6 addresses with a port pass.
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")
# Canonical Wikipedia URL the page store is keyed by (any spelling of an article URL maps to one key).
_WIKI = "https://en.wikipedia.org/wiki/"


@dataclass(frozen=True)
class SearchRequest:
    q: str
    num: int
    cost: int


def parse_search(body: bytes, cfg: RetrievalConfig) -> SearchRequest:
    """A Serper-style /search body as a checked request, or BadRequest (4xx) naming the field and the limit."""
    scfg = cfg.server
    obj = decode_json_object(body)
    if "q" not in obj:
        raise BadRequest(422, "missing field 'q'")
    q = obj["q"]
    if not isinstance(q, str):
        raise BadRequest(422, f"field 'q' must be a string, got {type(q).__name__}")
    if not q.strip():
        raise BadRequest(422, "field 'q' is empty; send a query")
    if len(q) > scfg.max_query_chars:
        raise BadRequest(
            422,
            f"field 'q' has {len(q)} characters; the limit is {scfg.max_query_chars} "
            "(retrieval.server.max_query_chars)",
        )
    num = obj.get("num", DEFAULT_NUM)
    if num is None:
        num = DEFAULT_NUM
    if isinstance(num, bool) or not isinstance(num, int):
        raise BadRequest(422, f"field 'num' must be an integer, got {type(num).__name__}")
    if not 1 <= num <= scfg.max_topk:
        raise BadRequest(
            422,
            f"field 'num' is out of range: it must be between 1 and {scfg.max_topk} "
            f"(retrieval.server.max_topk), got {num}",
        )
    cost = query_cost(q, num)
    if cost > scfg.max_request_cost:
        raise BadRequest(
            422,
            f"request cost {cost} (terms x num) is over the limit of {scfg.max_request_cost} "
            "(retrieval.server.max_request_cost): send a shorter query or a smaller num",
        )
    return SearchRequest(q, num, cost)


def passage_title(row: dict[str, Any]) -> str:
    """The page title of a corpus passage: from its Wikipedia URL, else the quoted first line of its contents."""
    url = row.get("url")
    title = title_of(url) if isinstance(url, str) else None
    if title:
        return title[:1].upper() + title[1:]
    first, _, _ = str(row.get("contents", "")).partition("\n")
    return first.strip().strip('"').strip() or "Untitled"


def passage_text(row: dict[str, Any]) -> str:
    """The passage without its '"Title"' first line (the corpus format)."""
    contents = str(row.get("contents", ""))
    first, nl, rest = contents.partition("\n")
    return rest.strip() if nl and first.startswith('"') and first.endswith('"') else contents.strip()


def page_path(title: str) -> str:
    """/wiki/<Title> with spaces as '_' and everything else that is not a plain character percent-encoded."""
    return "/wiki/" + quote(title.replace(" ", "_"), safe="()',-.:!;~_")


def base_url(request: Request) -> str:
    """scheme://host[:port] as the client addressed this server (its Host header), else the bound address."""
    host = request.headers.get("host", "")
    if not _HOST.match(host):
        server = request.scope.get("server") or ("127.0.0.1", 80)
        ip, port = server[0], server[1]
        host = f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}"
    return f"{request.scope.get('scheme', 'http')}://{host}"


def organic(hits: list[tuple[dict, float]], base: str) -> list[dict[str, Any]]:
    out = []
    for position, (row, _score) in enumerate(hits, start=1):
        title = passage_title(row)
        out.append(
            {
                "title": title,
                "link": base + page_path(title),
                "snippet": passage_text(row),
                "position": position,
            }
        )
    return out


def page_html(title: str, text: str) -> str:
    """A stored page ("Title\\n\\npara\\n\\npara...") as a minimal HTML document."""
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    if paragraphs and paragraphs[0] == title:
        paragraphs = paragraphs[1:]
    t = html.escape(title)
    body = "\n".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{t}</title>\n</head>\n'
        f"<body>\n<h1>{t}</h1>\n{body}\n</body>\n</html>\n"
    )


def mount_local_web(
    app: FastAPI,
    *,
    batcher: Any,
    pages: Any,
    cfg: RetrievalConfig,
    stats: Any,
    read: Callable[[Request], Awaitable[bytes]],
    error: Callable[[str, BadRequest], Response],
    disconnected: Callable[[str, Request], Response],
    respond: Callable[..., Response],
) -> None:
    """Add /search and /wiki/<Title> to the retrieval server's app (see the module docstring).

    `read`, `error`, `disconnected` and `respond` are the server's own body reader and response helpers, so the
    local web shares its limits, its counters and its error format.
    """
    max_title = cfg.server.max_query_chars

    @app.post("/search")
    async def search(request: Request) -> Response:
        stats.requests["search"] += 1
        try:
            req = parse_search(await read(request), cfg)
        except BadRequest as e:
            return error("search", e)
        except ClientDisconnect:
            return disconnected("/search", request)
        job = batcher.submit([req.q], req.num, req.cost)
        try:
            results = await job.fut
        except Exception as e:
            stats.errors["search:500"] += 1
            return respond({"error": f"search failed: {type(e).__name__}: {e}"}, 500)
        finally:
            job.fut.cancel()  # no-op when done; otherwise the batcher drops it
        return respond(
            {
                "searchParameters": {"q": req.q, "num": req.num, "type": "search", "engine": ENGINE},
                "organic": organic(results[0], base_url(request)),
            }
        )

    @app.get("/wiki/{title:path}")
    async def wiki(title: str) -> Response:
        stats.requests["wiki"] += 1
        name = " ".join(title.replace("_", " ").split())
        try:
            if not name:
                raise BadRequest(404, "no page title given: use /wiki/<Title>")
            if len(name) > max_title:
                raise BadRequest(414, f"page title has {len(name)} characters; the limit is {max_title}")
            page = pages.lookup(_WIKI + quote(name.replace(" ", "_"), safe=""))
            if page is None:
                raise BadRequest(404, f"no page titled {name!r} in the local web")
        except BadRequest as e:
            return error("wiki", e)
        shown = title_of(str(page.get("url", ""))) or name
        return Response(page_html(shown, str(page["contents"])), media_type="text/html; charset=utf-8")
