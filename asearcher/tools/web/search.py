"""A Serper-compatible search client: POST {"q", "num"} with the key in X-API-KEY -> {"organic": [...]}.

Each organic result becomes SearchHit(url=link, contents='"title"\\nsnippet'), the shape the agents know from the
local corpus. At most `max_concurrent` requests are in flight; each has a timeout; 429 / 5xx / connection errors
are retried with exponential backoff (asearcher.utils.retry) up to max_retries times; everything else, and a
reply that is not Serper-shaped, is a ToolError whose text has passed the secrets redaction.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from asearcher.tools.base import SearchHit
from asearcher.utils.secrets import redact

from .http import body_excerpt, check_status, client_kwargs, failed, with_retries

#: upstream cuts queries to this many characters
MAX_QUERY_CHARS = 2000


def _hits(reply: Any, query: str, topk: int) -> list[SearchHit]:
    what = f"search {query[:200]!r}"
    if not isinstance(reply, dict):
        raise failed(f"{what}: the reply is not a JSON object ({redact(repr(reply))[:200]})")
    organic = reply.get("organic", [])
    if not isinstance(organic, list):
        raise failed(f"{what}: 'organic' is not a list ({redact(repr(organic))[:200]})")
    hits = []
    for i, r in enumerate(organic[:topk]):
        if not isinstance(r, dict) or not isinstance(r.get("link"), str):
            raise failed(f"{what}: result {i} has no 'link' ({redact(repr(r))[:200]})")
        title = r.get("title") if isinstance(r.get("title"), str) else ""
        snippet = r.get("snippet") if isinstance(r.get("snippet"), str) else ""
        hits.append(SearchHit(url=r["link"], contents=f'"{title}"\n{snippet}'))
    return hits


class SerperSearch:
    """Search through a Serper-compatible endpoint (the key may be None for a local endpoint)."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        backoff_s: float = 1.0,
        max_concurrent: int = 20,
        trust_env: bool = True,
    ):
        self.url = url
        self._key = api_key
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._sem = asyncio.Semaphore(max_concurrent)
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), **client_kwargs(trust_env))

    async def search(self, query: str, topk: int) -> list[SearchHit]:
        what = f"search {query[:200]!r}"
        payload = {"q": query[:MAX_QUERY_CHARS], "num": topk}
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["X-API-KEY"] = self._key

        async def attempt() -> Any:
            try:
                async with asyncio.timeout(self.timeout_s):  # the whole call, however slowly bytes trickle in
                    resp = await self._client.post(self.url, json=payload, headers=headers)
            except TimeoutError:
                raise httpx.ReadTimeout(f"no complete reply within {self.timeout_s:g} s") from None
            check_status(resp, what)
            try:
                return resp.json()
            except ValueError:
                raise failed(f"{what}: the reply is not JSON ({body_excerpt(resp)})") from None

        async with self._sem:
            reply = await with_retries(attempt, self.max_retries, self.backoff_s, what)
        return _hits(reply, query, topk)

    async def aclose(self) -> None:
        await self._client.aclose()
