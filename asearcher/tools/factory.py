"""The tool backend a run's agents use (`tools.backend`), and the label that names it in result paths.

Only the local backend (the retrieval server over the Wikipedia corpus) exists today. A recipe that asks for
`tools.backend: web` stops at start-up with an error instead of quietly searching the local corpus and reporting
the numbers as web results.
"""

from __future__ import annotations

from typing import Any

from asearcher.errors import UserFacingError
from asearcher.tools.base import ToolBackend


def search_label(cfg: Any) -> str:
    """What the agents really search: 'web', or the local retrieval backend ('bm25', 'e5')."""
    return "web" if cfg.tools.backend == "web" else cfg.retrieval.backend


def setting_label(cfg: Any) -> str:
    """The agent setting in result paths: <agent.kind>-<search backend>-top<topk>."""
    return f"{cfg.agent.kind}-{search_label(cfg)}-top{cfg.agent.topk}"


def require_tools_backend(cfg: Any) -> None:
    """Fail at start-up for a tool backend that cannot run (never fall back to another one)."""
    if cfg.tools.backend != "local":
        raise UserFacingError(
            f"tools.backend: {cfg.tools.backend!r} is not implemented yet: web search and page reading arrive with "
            "their own stage. The web recipes validate and dry-run, but do not run them, and do not switch them to "
            "'local' without renaming the run: its results would be local-corpus numbers, not web numbers."
        )


def make_tools(cfg: Any, *, base_url: str | None = None, client: Any = None) -> ToolBackend:
    """The configured tool backend (local: the retrieval server at base_url / client / $ASEARCHER_RETRIEVAL_URL)."""
    require_tools_backend(cfg)
    from asearcher.tools.local import LocalTools

    if client is not None:
        return LocalTools(client)
    return LocalTools(base_url=base_url) if base_url else LocalTools()
