"""WebTools: web search + page reading behind the ToolBackend interface, with the URL guard and recordings.

    tools = WebTools(cfg.tools, record_dir="results/run/tool_recording")   # or make_tools(cfg, record_dir=...)
    hits = await tools.search("who wrote hamlet", 5)      # [SearchHit(url, contents='"Title"\\nsnippet')]
    text = await tools.access(hits[0].url)                # page text, None when missing; ToolError on failure

tools.web.record decides where answers come from: 'off' (live), 'record' (live; every response written, and a
request repeated within the run answered from the recording so a replay reproduces the run exactly), 'cache'
(a recorded success if any, else live and recorded), 'replay' (the recording only; no HTTP client is ever
created, and an unrecorded request is a ToolError naming it and the folder). Errors are responses too: a
recorded failure replays as the same ToolError text. Keys come from the environment variables named in
tools.*_api_key_env, are registered with the secrets redaction, and are never written or shown.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from asearcher.errors import UserFacingError
from asearcher.tools.base import SearchHit, ToolBackend, ToolError
from asearcher.utils.secrets import redact, redact_obj, register_env

from .guard import UrlGuard, literal_ip
from .recording import Recording, access_request, request_key, search_request

log = logging.getLogger(__name__)

SERPER_HOST = "google.serper.dev"


def local_search_base(retrieval_url: str | None = None) -> str:
    """The retrieval server (the local web) to search: the argument, $ASEARCHER_RETRIEVAL_URL, or the address
    files in $RAG_SERVER_ADDR_DIR."""
    from asearcher.retrieval.address import ADDR_DIR_ENV, URL_ENV, read_addresses

    urls = [u.strip() for u in (retrieval_url or os.environ.get(URL_ENV, "")).split(",") if u.strip()]
    if not urls and os.environ.get(ADDR_DIR_ENV):
        urls = read_addresses(os.environ[ADDR_DIR_ENV])
    if not urls:
        raise UserFacingError(
            f"tools.web.search_url is 'local' but no retrieval server is known: set {URL_ENV}=http://HOST:PORT "
            "(or run under `asearcher with-retrieval`, which sets it)"
        )
    return urls[0].rstrip("/")


def _is_loopback_endpoint(url: str) -> bool:
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    ip = literal_ip(host)
    return host == "localhost" or (ip is not None and ip.is_loopback)


def required_keys(tools_cfg: Any) -> list[str]:
    """The environment variables the web tools need (none for a replay, the local web or loopback endpoints)."""
    web = tools_cfg.web
    if tools_cfg.backend != "web" or web.record == "replay":
        return []
    names = []
    if web.search_url != "local" and not _is_loopback_endpoint(web.search_url):
        names.append(tools_cfg.search_api_key_env)
    if web.reader == "jina" and not _is_loopback_endpoint(web.reader_url):
        names.append(tools_cfg.reader_api_key_env)
    return names


def check_keys(tools_cfg: Any) -> None:
    """A clear start-up error naming every required key variable that is unset or empty."""
    missing = [n for n in required_keys(tools_cfg) if not register_env(n)]
    if missing:
        what = {
            tools_cfg.search_api_key_env: "the search API",
            tools_cfg.reader_api_key_env: "the page reader",
        }
        raise UserFacingError(
            "tools.backend is 'web' but "
            + "; ".join(f"${n} (the key of {what.get(n, 'a web tool')}) is not set" for n in missing)
            + ". Export it, or use tools.web.record: replay with a recording, or tools.web.search_url: local"
        )


def search_label(search_url: str) -> str:
    if search_url == "local":
        return "local"
    host = urlsplit(search_url).hostname or search_url
    return "serper" if host == SERPER_HOST else host


class WebTools(ToolBackend):
    """Web search + page access (see the module docstring). `resolver`: an async (host, port) -> [ip, ...]
    replacing DNS (tests)."""

    def __init__(
        self,
        tools_cfg: Any,
        *,
        record_dir: str | Path | None = None,
        retrieval_url: str | None = None,
        resolver: Callable[[str, int], Awaitable[list[str]]] | None = None,
    ):
        self.cfg = tools_cfg
        web = self.web = tools_cfg.web
        self.mode = web.record
        self.name = f"web:{search_label(web.search_url)}+{web.reader}"
        directory = web.record_dir or record_dir
        if self.mode != "off" and directory is None:
            raise UserFacingError(
                f"tools.web.record is {self.mode!r} but no recording folder is given: set tools.web.record_dir"
            )
        self.record_dir = None if self.mode == "off" else Path(directory)
        self.recording = (
            None
            if self.record_dir is None
            else Recording(
                self.record_dir, load=self.mode in ("replay", "cache"), must_exist=self.mode == "replay"
            )
        )
        self._memo: dict[str, asyncio.Future] = {}
        self._meta_written = False
        self._search = self._reader = None
        self.search_url = web.search_url
        allow = list(web.allow)
        if self.mode == "replay":  # nothing live: no keys, no server, no client
            self._keys: dict[str, str | None] = {}
            self._check_meta()
        else:
            check_keys(tools_cfg)
            self._keys = {
                "search": register_env(tools_cfg.search_api_key_env),
                "reader": register_env(tools_cfg.reader_api_key_env),
            }
            if web.search_url == "local":
                base = local_search_base(retrieval_url)
                self.search_url = base + "/search"
                parts = urlsplit(base)
                allow.append(f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}")
        self.allow = allow
        self.guard = UrlGuard(allow, resolver=resolver)

    # ---- what a protocol card shows ----------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        web, cfg = self.web, self.cfg
        search_host = "local" if web.search_url == "local" else urlsplit(web.search_url).hostname
        reader = {"kind": web.reader}
        if web.reader == "jina":
            reader["endpoint"] = urlsplit(web.reader_url).hostname
        return redact_obj(
            {
                "backend": "web",
                "setting": self.name,
                "search": {"api": "serper-compatible", "endpoint": search_host},
                "reader": reader,
                "record": {
                    "mode": self.mode,
                    "dir": None if self.record_dir is None else str(self.record_dir),
                },
                "limits": {
                    "timeout_s": web.timeout_s,
                    "max_page_bytes": web.max_page_bytes,
                    "max_redirects": web.max_redirects,
                    "max_retries": web.max_retries,
                    "max_concurrent_searches": cfg.max_concurrent_searches,
                    "max_concurrent_reads": cfg.max_concurrent_reads,
                },
                "allow": list(self.allow),
            }
        )

    # ---- the two tools -----------------------------------------------------------------------------------------

    async def search(self, query: str, topk: int) -> list[SearchHit]:
        async def live() -> list[dict[str, Any]]:
            hits = await self._searcher().search(query, topk)
            return [{"url": h.url, "contents": h.contents} for h in hits]

        response = await self._call("search", search_request(query, topk), live, f"search {query[:200]!r}")
        return [SearchHit(url=h["url"], contents=h["contents"]) for h in response]

    async def access(self, url: str) -> str | None:
        async def live() -> str | None:
            return await self._page_reader().read(url)

        return await self._call("access", access_request(url), live, f"access {str(url)[:300]!r}")

    # ---- recording ---------------------------------------------------------------------------------------------

    async def _call(
        self, tool: str, request: dict[str, Any], live: Callable[[], Awaitable[Any]], what: str
    ) -> Any:
        if self.recording is None:
            return await self._live_raising(live, what)
        key = request_key(tool, request)
        if self.mode == "replay":
            entry = self.recording.get(tool, request)
            if entry is None:
                raise ToolError(
                    redact(
                        f"replay: no recorded {tool} response for {request} in {str(self.record_dir)!r} "
                        "(record it with tools.web.record: record or cache)"
                    )
                )
            return self._answer(entry)
        old = self._memo.get(key)
        if old is not None and old.done() and (old.cancelled() or old.exception() is not None):
            del self._memo[key]  # an interrupted run (a cancelled task) is no answer: call again
        if key not in self._memo:
            entry = self.recording.get(tool, request) if self.mode == "cache" else None
            if entry is not None and entry.get("ok"):
                fut: asyncio.Future = asyncio.get_running_loop().create_future()
                fut.set_result(entry)
            else:
                fut = asyncio.ensure_future(self._record(tool, request, live, what))
            self._memo[key] = fut
        return self._answer(await asyncio.shield(self._memo[key]))

    async def _record(self, tool: str, request: dict[str, Any], live, what: str) -> dict[str, Any]:
        entry = await self._live(live, what)
        if not self._meta_written:
            self.recording.write_meta(self.describe())
            self._meta_written = True
        return self.recording.put(tool, request, entry)

    async def _live(self, live, what: str) -> dict[str, Any]:
        try:
            return {"ok": True, "response": await self._live_raising(live, what)}
        except ToolError as e:
            return {"ok": False, "error": str(e)}

    @staticmethod
    async def _live_raising(live, what: str) -> Any:
        try:
            return await live()
        except ToolError:
            raise
        # an unexpected client failure is still a tool failure, never a crashed trajectory
        except Exception as e:
            raise ToolError(redact(f"{what} failed: {type(e).__name__}: {e}")[:500]) from e

    @staticmethod
    def _answer(entry: dict[str, Any]) -> Any:
        if entry.get("ok"):
            return entry.get("response")
        raise ToolError(entry.get("error") or "the recorded call failed")

    def _check_meta(self) -> None:
        meta = self.recording.read_meta() if self.recording is not None else None
        if meta and meta.get("setting") not in (None, self.name):
            log.warning(
                "replaying %s recorded with tools %r as %r: answers come from the recording as they are",
                self.record_dir,
                meta.get("setting"),
                self.name,
            )

    # ---- live clients, built on first use (never in replay) -----------------------------------------------------

    def _searcher(self):
        if self._search is None:
            from .search import SerperSearch

            web = self.web
            self._search = SerperSearch(
                self.search_url,
                self._keys.get("search"),
                timeout_s=web.timeout_s,
                max_retries=web.max_retries,
                backoff_s=web.backoff_s,
                max_concurrent=self.cfg.max_concurrent_searches,
                trust_env=not _is_loopback_endpoint(self.search_url),  # no proxy for a local endpoint
            )
        return self._search

    def _page_reader(self):
        if self._reader is None:
            from .readers import DirectReader, JinaReader

            web = self.web
            kw = dict(
                timeout_s=web.timeout_s,
                max_page_bytes=web.max_page_bytes,
                max_retries=web.max_retries,
                backoff_s=web.backoff_s,
                max_concurrent=self.cfg.max_concurrent_reads,
            )
            if web.reader == "jina":
                trust_env = not _is_loopback_endpoint(web.reader_url)
                self._reader = JinaReader(
                    self.guard, web.reader_url, self._keys.get("reader"), trust_env=trust_env, **kw
                )
            else:
                self._reader = DirectReader(self.guard, max_redirects=web.max_redirects, **kw)
        return self._reader

    async def aclose(self) -> None:
        for client in (self._search, self._reader):
            if client is not None:
                await client.aclose()
        self._search = self._reader = None
        if self.recording is not None:
            self.recording.close()


def make_web_tools(tools_cfg: Any, *, record_dir: str | Path | None = None, retrieval_url: str | None = None):
    """WebTools for a `tools` config section (record_dir: the caller's recording folder when the config has none)."""
    return WebTools(tools_cfg, record_dir=record_dir, retrieval_url=retrieval_url)
