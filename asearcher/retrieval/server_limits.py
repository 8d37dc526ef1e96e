"""Request limits of the retrieval server: the body read (size and time bounded while streaming) and the parsing
of /retrieve and /access bodies into checked requests, or a BadRequest that names the field and the limit.

`parse_retrieve` / `parse_access` are pure (bytes in, request or BadRequest out), so they are tested without a
server. The cost of a /retrieve request is the sum over its queries of their terms (whitespace tokens, at most
the searcher's clip) times topk: a proxy for Lucene's work, bounded by retrieval.server.max_request_cost.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from asearcher.config import RetrievalConfig, ServerConfig

from .searcher import MAX_QUERY_TERMS

try:
    import orjson

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    _loads = orjson.loads
    _JSONError: tuple[type[Exception], ...] = (orjson.JSONDecodeError,)
except ImportError:  # pragma: no cover
    import json

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False).encode()

    _loads = json.loads
    _JSONError = (json.JSONDecodeError, UnicodeDecodeError)

# orjson parses integers beyond 64 bits as floats: an integral float this large was an integer out of range.
_BIG = float(2**63)


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class RetrieveRequest:
    queries: list[str]
    topk: int
    return_scores: bool
    cost: int


def max_body_bytes(scfg: ServerConfig) -> int:
    """Largest body a legal request can need (every query at max_query_chars of 4-byte UTF-8), plus slack."""
    return scfg.max_queries_per_request * (scfg.max_query_chars * 4 + 16) + 65536


def query_cost(query: str, topk: int) -> int:
    return max(1, min(len(query.split()), MAX_QUERY_TERMS)) * topk


async def read_body(request: Any, max_body: int, timeout_s: float) -> bytes:
    """The body, read chunk by chunk: 413 as soon as it passes max_body, 408 if it is not whole in timeout_s.

    A client that disconnects mid-body raises starlette's ClientDisconnect (the caller logs and counts it).
    """
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_body:
        raise BadRequest(413, f"request body of {length} bytes is over the {max_body}-byte limit")
    chunks: list[bytes] = []
    total = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                total += len(chunk)
                if total > max_body:
                    raise BadRequest(413, f"request body is over the {max_body}-byte limit")
                chunks.append(chunk)
    except TimeoutError:
        raise BadRequest(
            408,
            f"request body not received within {timeout_s:g}s (retrieval.server.body_timeout_s); "
            f"got {total} bytes",
        ) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decode_json_object(body: bytes) -> dict:
    try:
        obj = _loads(body)
    except _JSONError as e:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as u:
            raise BadRequest(400, f"request body is not valid UTF-8 (bad byte at offset {u.start})") from None
        raise BadRequest(400, f"request body is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise BadRequest(422, f"request body must be a JSON object, got {type(obj).__name__}")
    return obj


def _field(body: dict, name: str) -> Any:
    if name not in body:
        raise BadRequest(422, f"missing field {name!r}")
    return body[name]


def _str_list(value: Any, name: str, max_items: int, max_chars: int | None) -> list[str]:
    if not isinstance(value, list):
        raise BadRequest(422, f"field {name!r} must be a list of strings, got {type(value).__name__}")
    if len(value) > max_items:
        raise BadRequest(
            422,
            f"field {name!r} has {len(value)} items; at most {max_items} per request "
            "(retrieval.server.max_queries_per_request)",
        )
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise BadRequest(422, f"{name}[{i}] must be a string, got {type(v).__name__}")
        if max_chars is not None and len(v) > max_chars:
            raise BadRequest(
                422,
                f"{name}[{i}] has {len(v)} characters; the limit is {max_chars} (retrieval.server.max_query_chars)",
            )
    return value


def _topk(value: Any, default: int, max_topk: int) -> int:
    if value is None:
        return default
    out_of_range = (
        f"field 'topk' is out of range: it must be between 1 and {max_topk} (retrieval.server.max_topk)"
    )
    if isinstance(value, float) and value.is_integer() and abs(value) >= _BIG:
        raise BadRequest(422, f"{out_of_range}, got {value:.6g}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(422, f"field 'topk' must be an integer or null, got {type(value).__name__}")
    if not 1 <= value <= max_topk:
        raise BadRequest(422, f"{out_of_range}, got {value}")
    return value


def parse_retrieve(body: bytes, cfg: RetrievalConfig) -> RetrieveRequest:
    """A /retrieve body as a checked request, or BadRequest (4xx) naming the field and the limit."""
    scfg = cfg.server
    obj = decode_json_object(body)
    queries = _str_list(_field(obj, "queries"), "queries", scfg.max_queries_per_request, scfg.max_query_chars)
    if not queries:
        raise BadRequest(422, "field 'queries' is empty; send at least one query")
    topk = _topk(obj.get("topk"), cfg.topk, scfg.max_topk)
    return_scores = obj.get("return_scores", False)
    if return_scores is None:
        return_scores = False
    if not isinstance(return_scores, bool):
        raise BadRequest(
            422, f"field 'return_scores' must be true or false, got {type(return_scores).__name__}"
        )
    cost = sum(query_cost(q, topk) for q in queries)
    if cost > scfg.max_request_cost:
        raise BadRequest(
            422,
            f"request cost {cost} (queries x terms x topk) is over the limit of {scfg.max_request_cost} "
            "(retrieval.server.max_request_cost): send fewer or shorter queries, or a smaller topk",
        )
    return RetrieveRequest(queries, topk, return_scores, cost)


def parse_access(body: bytes, cfg: RetrievalConfig) -> list[str]:
    """The URLs of an /access body, or BadRequest (4xx)."""
    obj = decode_json_object(body)
    return _str_list(_field(obj, "urls"), "urls", cfg.server.max_queries_per_request, None)
