"""Page readers: a Jina-style reader service, or a direct fetch that does the reader's work itself.

Both check the page URL with the guard first (asearcher.tools.web.guard) and return the page text whole (the
agents cut it into chunks); a missing page (404 / 410) is None, every other failure a ToolError.

DirectReader: one GET per hop, to the address the guard validated (Host header and TLS server name set to the
URL's host), redirects followed by hand up to max_redirects with the guard run again on every hop (a loop is an
error), the Content-Type checked before the body is read (HTML -> clean text; text/plain as is; anything else
is "not a text page"), the body read up to max_page_bytes, and the whole read (every hop and retry) under one
time cap. Proxy settings from the environment are ignored: a proxy would fetch an address the guard never saw.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urljoin

import httpx


from .guard import Target, UrlGuard
from .http import check_status, client_kwargs, error_body, failed, read_capped, with_retries
from .text import HTML_TYPES, TEXT_TYPES, decode, media_type, page_text

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MISSING = frozenset({404, 410})
_ACCEPT = "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.1"


class _Reader:
    def __init__(
        self,
        guard: UrlGuard,
        *,
        timeout_s: float,
        max_page_bytes: int,
        max_retries: int,
        backoff_s: float,
        max_concurrent: int,
        trust_env: bool,
        keepalive: bool = True,
    ):
        self.guard = guard
        self.timeout_s = timeout_s
        self.max_page_bytes = max_page_bytes
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self._sem = asyncio.Semaphore(max_concurrent)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s), **client_kwargs(trust_env, keepalive)
        )

    async def read(self, url: str) -> str | None:
        what = f"access {url[:300]!r}"
        async with self._sem:
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await self._read(url, what)
            except TimeoutError:
                raise failed(f"{what}: timed out after {self.timeout_s:g} s (tools.web.timeout_s)") from None

    async def _read(self, url: str, what: str) -> str | None:
        raise NotImplementedError

    async def aclose(self) -> None:
        await self._client.aclose()


class JinaReader(_Reader):
    """GET reader_url + URL (Authorization: Bearer key); the service fetches the page and returns its text.

    The service follows the page's redirects itself, from its own network: the guard checks the first URL only.
    """

    def __init__(
        self, guard: UrlGuard, reader_url: str, api_key: str | None, *, trust_env: bool = True, **kw
    ):
        super().__init__(guard, trust_env=trust_env, **kw)
        self.reader_url = reader_url
        self._key = api_key

    async def _read(self, url: str, what: str) -> str | None:
        await self.guard.check(url)
        headers = {"Accept": "text/plain"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"

        async def attempt() -> str | None:
            req = self._client.build_request("GET", self.reader_url + url, headers=headers)
            resp = await self._client.send(req, stream=True)
            try:
                if resp.status_code in MISSING:
                    return None
                if not 200 <= resp.status_code < 300:
                    check_status(resp, f"{what} (reader)", await error_body(resp, what))
                body = await read_capped(resp, self.max_page_bytes, what)
            finally:
                await resp.aclose()
            text = decode(body, resp.headers.get("content-type"), html=False).strip()
            return text or None

        return await with_retries(attempt, self.max_retries, self.backoff_s, what)


class DirectReader(_Reader):
    """Fetch pages directly (guarded, capped) and turn HTML into text."""

    def __init__(self, guard: UrlGuard, *, max_redirects: int = 5, **kw):
        super().__init__(guard, trust_env=False, keepalive=False, **kw)
        self.max_redirects = max_redirects

    async def _read(self, url: str, what: str) -> str | None:
        current, seen = url, {url}
        for _ in range(self.max_redirects + 1):
            target = await self.guard.check(current)
            kind, value, ctype = await with_retries(
                lambda t=target: self._get(t, what), self.max_retries, self.backoff_s, what
            )
            if kind == "missing":
                return None
            if kind == "page":
                text = page_text(value, ctype)
                if text is None:  # kind_of sniffed a type-less body as binary
                    raise failed(f"{what}: not a text page (no content-type; binary body)")
                return text
            nxt = urljoin(current, value)
            if nxt in seen:
                raise failed(
                    f"{what}: redirect loop ({current[:200]!r} -> {nxt[:200]!r} was already visited)"
                )
            seen.add(nxt)
            current = nxt
        raise failed(f"{what}: more than {self.max_redirects} redirects (tools.web.max_redirects)")

    async def _get(self, target: Target, what: str) -> tuple[str, bytes | str | None, str | None]:
        """One request: ('page', body, content-type), ('redirect', location, None) or ('missing', None, None)."""
        ext = {}
        if target.scheme == "https" and target.server_name:
            ext["sni_hostname"] = target.server_name
        req = self._client.build_request(
            "GET", target.pinned_url, headers={"Host": target.host_header, "Accept": _ACCEPT}, extensions=ext
        )
        resp = await self._client.send(req, stream=True)
        try:
            status = resp.status_code
            if status in REDIRECTS:
                location = resp.headers.get("location")
                if not location:
                    raise failed(f"{what}: HTTP {status} redirect without a Location header")
                return "redirect", location, None
            if status in MISSING:
                return "missing", None, None
            if not 200 <= status < 300:
                check_status(resp, what, await error_body(resp, what))
            ctype = resp.headers.get("content-type")
            mt = media_type(ctype)
            if mt and mt not in HTML_TYPES and mt not in TEXT_TYPES:
                raise failed(f"{what}: not a text page (content-type {mt!r})")
            body = await read_capped(resp, self.max_page_bytes, what)
            return "page", body, ctype
        finally:
            await resp.aclose()
