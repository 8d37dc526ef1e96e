"""Page access against servers on 127.0.0.1: the direct reader's caps, redirects, content types and charsets,
the guard on every redirect hop, and the Jina-style reader."""

from __future__ import annotations

import asyncio
import time

import pytest

from asearcher.config import ToolsConfig, WebConfig
from asearcher.tools.base import ToolError
from asearcher.tools.web import URLRefused, WebTools
from tests.tools.web_servers import CANARY, Server, page_server, reader_server, send


@pytest.fixture(scope="module")
def other():
    """A loopback server outside the allowlist: it must never see a request."""
    with Server({"/secret": lambda h: send(h, 200, b"secret", "text/plain")}) as s:
        yield s


@pytest.fixture(scope="module")
def pages(other):
    with page_server(other.port) as s:
        yield s


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("SERPER_API_KEY", CANARY)
    monkeypatch.setenv("JINA_API_KEY", CANARY)


def tools_for(pages: Server, resolver=None, **web) -> WebTools:
    settings = dict(
        search_url="http://127.0.0.1:9/search",
        reader="direct",
        allow=[pages.hostport],
        timeout_s=1.0,
        max_page_bytes=100_000,
        max_redirects=3,
        max_retries=2,
        backoff_s=0.01,
    )
    settings.update(web)
    return WebTools(ToolsConfig(backend="web", web=WebConfig(**settings)), resolver=resolver)


def access(pages: Server, url: str, resolver=None, **web):
    async def go():
        tools = tools_for(pages, resolver, **web)
        try:
            return await tools.access(url)
        finally:
            await tools.aclose()

    return asyncio.run(go())


def failure(pages, url, resolver=None, **web) -> str:
    with pytest.raises(ToolError) as e:
        access(pages, url, resolver, **web)
    assert CANARY not in str(e.value)
    return str(e.value)


def test_html_becomes_clean_text(pages):
    text = access(pages, f"{pages.base}/html")
    lines = text.split("\n")
    assert lines[0] == "Hamlet"
    assert "Hamlet is a tragedy by William Shakespeare." in lines
    assert "It was written around 1600." in lines and "Second line." in lines
    assert "Act one" in lines and "Act two" in lines
    for junk in ("script text", "color: red", "Main menu", "Footer links", "a comment", "<p>"):
        assert junk not in text
    assert access(pages, f"{pages.base}/plain") == "Plain text page.\nLine two."


def test_slow_and_trickling_pages_time_out_as_a_whole(pages):
    for route in ("/slow", "/trickle"):
        t0 = time.monotonic()
        assert "timed out after 1 s" in failure(pages, pages.base + route)
        assert time.monotonic() - t0 < 3


def test_huge_pages_are_capped(pages):
    assert "over the cap of 100000 bytes" in failure(pages, f"{pages.base}/huge")
    assert "50000000 bytes" in failure(pages, f"{pages.base}/huge-declared")


def test_broken_connection_is_retried_then_reported(pages):
    before = pages.counts.get("/broken", 0)
    assert "closed or broken mid-response" in failure(pages, f"{pages.base}/broken")
    assert pages.counts["/broken"] - before == 3  # max_retries=2: three attempts


def test_status_codes(pages):
    assert access(pages, f"{pages.base}/no-such-page") is None  # 404
    assert access(pages, f"{pages.base}/gone") is None  # 410
    assert "HTTP 403" in failure(pages, f"{pages.base}/forbidden")
    assert "HTTP 500" in failure(pages, f"{pages.base}/error") and "3 attempts" in failure(
        pages, f"{pages.base}/error"
    )
    assert access(pages, f"{pages.base}/flaky") == "Plain text page.\nLine two."  # 503, 503, then 200


def test_redirects(pages, other):
    assert access(pages, f"{pages.base}/chain/2").startswith("Hamlet")  # 3 hops, max_redirects=3
    assert access(pages, f"{pages.base}/relative").startswith("Hamlet")
    assert "more than 3 redirects" in failure(pages, f"{pages.base}/chain/5")
    assert "redirect loop" in failure(pages, f"{pages.base}/loop-a")
    assert "without a Location" in failure(pages, f"{pages.base}/no-location")


def test_redirect_out_of_the_allowlist_is_refused_before_any_request(pages, other):
    for route in ("/to-other", "/to-other-decimal"):
        with pytest.raises(URLRefused, match="loopback"):
            access(pages, pages.base + route)
    with pytest.raises(URLRefused, match="loopback"):
        access(pages, f"{other.base}/secret")  # directly, too
    with pytest.raises(URLRefused, match="metadata"):
        access(pages, f"{pages.base}/to-metadata")
    with pytest.raises(URLRefused, match="scheme 'file'"):
        access(pages, f"{pages.base}/to-file")
    assert other.requests == []


def test_content_types_and_charsets(pages):
    assert "not a text page (content-type 'application/pdf')" in failure(pages, f"{pages.base}/pdf")
    assert "content-type 'image/png'" in failure(pages, f"{pages.base}/image")
    assert access(pages, f"{pages.base}/latin1") == "Café à la crème"
    assert access(pages, f"{pages.base}/latin1-nocharset") == "Café à la crème"  # not UTF-8: cp1252 fallback
    assert access(pages, f"{pages.base}/meta-charset") == "Привет"
    assert access(pages, f"{pages.base}/bogus-charset") == "naïve"


def test_connects_to_the_checked_address_with_the_host_name(pages):
    async def resolver(host, port):
        return ["127.0.0.1"] if host == "pages.test" else []

    url = f"http://pages.test:{pages.port}/html"
    n = len(pages.requests)
    text = access(pages, url, resolver, allow=[f"pages.test:{pages.port}"])
    assert text.startswith("Hamlet")
    assert pages.requests[n][2]["Host"] == f"pages.test:{pages.port}"
    with pytest.raises(URLRefused):  # the same name without its allowlist entry
        access(pages, url, resolver, allow=[])


def test_jina_reader(pages, other):
    async def resolver(host, port):
        return {"example.org": ["93.184.216.34"]}.get(host, [])

    with reader_server() as reader:
        kw = dict(reader="jina", reader_url=f"{reader.base}/r/")
        assert (
            access(pages, "https://example.org/a", resolver, **kw)
            == "Title: page\n\nText of https://example.org/a"
        )
        assert reader.requests[-1][2]["Authorization"] == f"Bearer {CANARY}"
        assert access(pages, "https://example.org/missing", resolver, **kw) is None
        msg = failure(pages, "https://example.org/echo", resolver, **kw, max_retries=0)
        assert "HTTP 422" in msg and "[redacted]" in msg
        n = len(reader.requests)
        with pytest.raises(URLRefused):
            access(pages, f"{other.base}/secret", resolver, **kw)
        assert len(reader.requests) == n  # refused before the reader was asked
    assert other.requests == []
