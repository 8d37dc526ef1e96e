"""The tool backend a run's agents use (`tools.backend`), and the label that names it in result paths.

'local': the retrieval server over the Wikipedia corpus (LocalTools). 'web': a search API + page reader
(asearcher.tools.web.WebTools). A web run whose keys are missing stops at start-up naming the variables; it never
falls back to the local corpus.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asearcher.errors import UserFacingError
from asearcher.tools.base import ToolBackend


def search_label(cfg: Any) -> str:
    """What the agents really search: 'web', or the local retrieval backend ('bm25', 'e5')."""
    return "web" if cfg.tools.backend == "web" else cfg.retrieval.backend


def setting_label(cfg: Any) -> str:
    """The agent setting in result paths: <agent.kind>-<search backend>-top<topk>; <agent.kind>-notools for an
    agent that calls no tool (direct generation)."""
    from asearcher.config.agent import TOOL_FREE_KINDS

    if cfg.agent.kind in TOOL_FREE_KINDS:
        return f"{cfg.agent.kind}-notools"
    return f"{cfg.agent.kind}-{search_label(cfg)}-top{cfg.agent.topk}"


def require_tools_backend(cfg: Any) -> None:
    """Fail at start-up for a tool backend that cannot run (never fall back to another one): for 'web', the
    API keys its search endpoint and reader need (asearcher.tools.web.required_keys) must be set."""
    backend = cfg.tools.backend
    if backend == "web":
        from asearcher.tools.web import check_keys

        check_keys(cfg.tools)
    elif backend != "local":
        raise UserFacingError(f"tools.backend: {backend!r} is not a tool backend (expected 'local' or 'web')")


def make_tools(
    cfg: Any, *, base_url: str | None = None, client: Any = None, record_dir: str | Path | None = None
) -> ToolBackend:
    """The configured tool backend.

    local: the retrieval server at base_url / client / $ASEARCHER_RETRIEVAL_URL. web: WebTools; base_url is then
    the retrieval server whose local web `tools.web.search_url: local` searches, and record_dir the recording
    folder when tools.web.record_dir is null (a caller such as an evaluation passes one next to its results)."""
    require_tools_backend(cfg)
    if cfg.tools.backend == "web":
        from asearcher.tools.web import make_web_tools

        return make_web_tools(cfg.tools, record_dir=record_dir, retrieval_url=base_url)
    from asearcher.tools.local import LocalTools

    if client is not None:
        return LocalTools(client)
    return LocalTools(base_url=base_url) if base_url else LocalTools()
