"""The tools an agent can call, behind one interface so local retrieval and the web swap freely.

`LocalTools` (asearcher.tools.local) talks to the retrieval server (/retrieve, /access); `WebTools`
(asearcher.tools.web) implements the same two methods over a search engine API and a page reader.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass


@dataclass
class SearchHit:
    url: str
    contents: str  # for the wiki corpus: '"Title"\\npassage text'
    id: str | None = None
    score: float | None = None


class ToolBackend(abc.ABC):
    name: str = "tools"

    @abc.abstractmethod
    async def search(self, query: str, topk: int) -> list[SearchHit]:
        """Search; raises ToolError on failure after the client's bounded retries."""

    @abc.abstractmethod
    async def access(self, url: str) -> str | None:
        """Full page text for url, or None when the page is unknown."""

    async def aclose(self) -> None:  # noqa: B027  (optional hook: most backends hold nothing to close)
        """Release connections; the default holds none."""


class ToolError(RuntimeError):
    """A tool call failed after retries; agents turn it into an observation, runners count it."""
