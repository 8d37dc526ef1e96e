"""Tool backend settings: the local retrieval server, or web search + page reading (`tools.web`)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from .base import Section

#: search_url's special value: the retrieval server's own Serper-format /search (the local web)
LOCAL_SEARCH = "local"

_HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+):\d{1,5}$")


class WebConfig(Section):
    """Web search (a Serper-compatible API) and page reading (a Jina-style reader, or a direct fetch)."""

    search_url: str = Field(
        "https://google.serper.dev/search",
        description="Serper-compatible search endpoint (POST {'q', 'num'} -> {'organic': [...]}). 'local': "
        "$ASEARCHER_RETRIEVAL_URL/search, the retrieval server's local web over the corpus (its host:port is then "
        "added to `allow` so its /wiki/ pages can be read).",
    )
    reader: Literal["jina", "direct"] = Field(
        "jina",
        description="Page access: 'jina' sends the URL to a Jina-style reader service (reader_url + URL, key from "
        "tools.reader_api_key_env); 'direct' fetches the page itself (guarded, capped) and turns HTML into text.",
    )
    reader_url: str = Field(
        "https://r.jina.ai/", description="Reader endpoint; the page URL is appended to it."
    )
    allow: list[str] = Field(
        default_factory=list,
        description="'host:port' entries the URL guard lets through although they are loopback/private "
        "addresses (a local web, test servers). Everything else must resolve to public addresses only.",
    )
    timeout_s: float = Field(
        30.0,
        gt=0,
        description="Time cap of one tool call (a search request; a page fetch over all its hops).",
    )
    max_page_bytes: int = Field(
        5_000_000, ge=1024, description="Largest page body read (bytes); a larger page is a tool error."
    )
    max_redirects: int = Field(5, ge=0, description="Direct reader: most redirects followed per page.")
    max_retries: int = Field(
        3,
        ge=0,
        description="Retries after the first attempt on 429 / 5xx / connection errors (upstream: 4 attempts).",
    )
    backoff_s: float = Field(
        1.0, ge=0, description="First retry wait; doubled on each retry (upstream: 1/2/4 s)."
    )
    record: Literal["off", "record", "replay", "cache"] = Field(
        "off",
        description="Tool-response recordings: 'record' calls live and writes every response; 'replay' answers "
        "only from the recording, never touching the network (an unrecorded request is an error); 'cache' uses "
        "a recorded success when there is one, else calls live and records.",
    )
    record_dir: str | None = Field(
        None,
        description="Folder of the recordings (search.jsonl, access.jsonl). null: the caller chooses (an "
        "evaluation records next to its results); required for record modes outside such a caller.",
    )

    @field_validator("allow")
    @classmethod
    def _host_port(cls, v: list[str]) -> list[str]:
        bad = [e for e in v if not _HOST_PORT.match(e.strip())]
        if bad:
            raise ValueError(f"allow entries must be 'host:port' (e.g. '127.0.0.1:8000'); got {bad}")
        return [e.strip() for e in v]

    @field_validator("search_url", "reader_url")
    @classmethod
    def _http_url(cls, v: str, info) -> str:
        if info.field_name == "search_url" and v == LOCAL_SEARCH:
            return v
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(
                "must be an http(s):// URL" + (" or 'local'" if info.field_name == "search_url" else "")
            )
        return v


class ToolsConfig(Section):
    """Which search/browse backend agents use."""

    backend: Literal["local", "web"] = Field(
        "local",
        description="'local': the retrieval server over the Wikipedia corpus; 'web': a web search API + page reader.",
    )
    search_api_key_env: str = Field("SERPER_API_KEY", description="Env var with the web search API key.")
    reader_api_key_env: str = Field("JINA_API_KEY", description="Env var with the page reader API key.")
    max_concurrent_searches: int = Field(20, ge=1, description="Web: concurrent search calls (upstream: 20).")
    max_concurrent_reads: int = Field(10, ge=1, description="Web: concurrent page reads (upstream: 10).")
    web: WebConfig = Field(default_factory=WebConfig, description="Web search and page reading settings.")
