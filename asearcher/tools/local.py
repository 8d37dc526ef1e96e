"""Tools over the local retrieval server (/retrieve for search, /access for pages).

Any failure the client reports after its own bounded retries (HTTP errors, timeouts, malformed replies)
becomes a ToolError, which agents turn into an observation. ToolError messages pass the secrets redaction step
(asearcher.utils.secrets): a server's error body could quote a key.
"""

from __future__ import annotations

from typing import Any

from asearcher.tools.base import SearchHit, ToolBackend, ToolError
from asearcher.utils.secrets import redact


def _failed(message: str) -> ToolError:
    """A ToolError with a redacted message."""
    return ToolError(redact(message))


def _show(obj: Any) -> str:
    """A reply fragment for an error message: redacted before the cut, so a cut never splits a secret."""
    return redact(repr(obj))[:200]


class LocalTools(ToolBackend):
    name = "local"

    def __init__(
        self,
        client: Any = None,
        *,
        base_url: str | None = None,
        timeout_s: float = 120.0,
        max_retries: int = 3,
    ):
        """`client`: a RetrievalClient (or anything with aretrieve/aaccess); else one is built for base_url,
        or discovered from $ASEARCHER_RETRIEVAL_URL."""
        if client is None:
            from asearcher.retrieval.client import RetrievalClient

            if base_url is None:
                client = RetrievalClient.discover()
            else:
                client = RetrievalClient(base_url, timeout_s=timeout_s, max_retries=max_retries)
        self.client = client

    async def search(self, query: str, topk: int) -> list[SearchHit]:
        try:
            results = await self.client.aretrieve([query], topk=topk, return_scores=True)
        except ToolError:
            raise
        except Exception as e:
            raise _failed(f"search {query!r} failed: {type(e).__name__}: {e}") from e
        if not isinstance(results, list) or len(results) != 1 or not isinstance(results[0], list):
            raise _failed(
                f"search {query!r}: malformed reply (expected one result list, got {_show(results)})"
            )
        hits = []
        for i, doc in enumerate(results[0]):
            score = None
            if isinstance(doc, dict) and "document" in doc:  # the return_scores shape
                score, doc = doc.get("score"), doc["document"]
            if not isinstance(doc, dict) or not isinstance(doc.get("contents"), str):
                raise _failed(f"search {query!r}: result {i} has no text field 'contents' ({_show(doc)})")
            url = doc.get("url")
            if not isinstance(url, str):
                raise _failed(f"search {query!r}: result {i} has no field 'url' ({_show(doc)})")
            hits.append(
                SearchHit(
                    url=url,
                    contents=doc["contents"],
                    id=None if doc.get("id") is None else str(doc["id"]),
                    score=score,
                )
            )
        return hits

    async def access(self, url: str) -> str | None:
        try:
            results = await self.client.aaccess([url])
        except ToolError:
            raise
        except Exception as e:
            raise _failed(f"access {url!r} failed: {type(e).__name__}: {e}") from e
        if not isinstance(results, list) or len(results) != 1:
            raise _failed(f"access {url!r}: malformed reply (expected one entry, got {_show(results)})")
        page = results[0]
        if page is None:
            return None
        if not isinstance(page, dict) or not isinstance(page.get("contents"), str):
            raise _failed(f"access {url!r}: page has no text field 'contents' ({_show(page)})")
        return page["contents"]

    async def aclose(self) -> None:
        close = getattr(self.client, "aclose", None)
        if close is not None:
            await close()
