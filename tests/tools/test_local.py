"""LocalTools over the retrieval client: hits/pages mapped, every failure a ToolError."""

from __future__ import annotations

import asyncio

import pytest

from asearcher.tools.base import SearchHit, ToolError
from asearcher.tools.local import LocalTools


class FakeClient:
    """Test double with RetrievalClient's interface (aretrieve / aaccess)."""

    def __init__(self, retrieve=None, access=None, error: Exception | None = None):
        self.retrieve_reply = retrieve
        self.access_reply = access
        self.error = error
        self.calls: list[tuple] = []
        self.closed = False

    async def aretrieve(self, queries, topk=5, return_scores=False):
        self.calls.append(("retrieve", queries, topk))
        if self.error:
            raise self.error
        return self.retrieve_reply

    async def aaccess(self, urls):
        self.calls.append(("access", urls))
        if self.error:
            raise self.error
        return self.access_reply

    async def aclose(self):
        self.closed = True


def test_search_maps_rows_to_hits():
    rows = [
        {"id": 7, "contents": '"A"\ntext a', "url": "https://en.wikipedia.org/w/index.php?title=A"},
        {"document": {"id": "8", "contents": "b", "url": "u8"}, "score": 1.5},
    ]
    client = FakeClient(retrieve=[rows])
    tools = LocalTools(client)
    hits = asyncio.run(tools.search("a query", 3))
    assert hits == [
        SearchHit(url=rows[0]["url"], contents='"A"\ntext a', id="7"),
        SearchHit(url="u8", contents="b", id="8", score=1.5),
    ]
    assert client.calls == [("retrieve", ["a query"], 3)]
    asyncio.run(tools.aclose())
    assert client.closed


def test_access_maps_pages_and_unknown_urls():
    assert (
        asyncio.run(LocalTools(FakeClient(access=[{"url": "u", "contents": "page"}])).access("u")) == "page"
    )
    assert asyncio.run(LocalTools(FakeClient(access=[None])).access("u")) is None


@pytest.mark.parametrize(
    "client, call, match",
    [
        (FakeClient(error=ConnectionError("refused")), "search", "ConnectionError: refused"),
        (FakeClient(error=TimeoutError("slow")), "access", "TimeoutError"),
        (FakeClient(retrieve=[[{"url": "u"}]]), "search", "'contents'"),
        (FakeClient(retrieve=[[{"contents": "x"}]]), "search", "'url'"),
        (FakeClient(retrieve={"result": []}), "search", "malformed"),
        (FakeClient(access=[{"url": "u"}]), "access", "'contents'"),
        (FakeClient(access=[]), "access", "malformed"),
    ],
)
def test_failures_are_tool_errors(client, call, match):
    tools = LocalTools(client)
    with pytest.raises(ToolError, match=match):
        asyncio.run(tools.search("q", 5) if call == "search" else tools.access("u"))


def test_against_real_retrieval_server(retrieval_server):
    """Integration: LocalTools -> RetrievalClient -> real HTTP retrieval server over the mirror corpus."""
    tools = LocalTools(retrieval_server.client(timeout_s=30, max_retries=1))

    async def go():
        try:
            hits = await tools.search("City Bank of New York founded 1812", 3)
            assert 0 < len(hits) <= 3 and all(h.url and h.contents and h.id for h in hits)
            assert all(isinstance(h.score, float) for h in hits)
            assert any("Citibank" in h.contents for h in hits)
            page = await tools.access(hits[0].url)
            assert page is None or (isinstance(page, str) and page)
            assert await tools.access("https://example.invalid/no-such-page") is None
        finally:
            await tools.aclose()

    asyncio.run(go())


def test_discover_uses_the_environment(retrieval_server, monkeypatch):
    monkeypatch.setenv("ASEARCHER_RETRIEVAL_URL", retrieval_server.url)
    tools = LocalTools()
    hits = asyncio.run(tools.search("Citibank", 2))
    assert len(hits) == 2


def test_unreachable_server_is_a_tool_error():
    from asearcher.retrieval.client import RetrievalClient

    tools = LocalTools(RetrievalClient("http://127.0.0.1:9", timeout_s=2, max_retries=0))
    with pytest.raises(ToolError, match="RetrievalError"):
        asyncio.run(tools.search("q", 1))
