"""One tool call, JSON out: the agents' search and page access from the shell, for debugging and scripting.

  asearcher tool search "query" [--topk K]   -> [{"url", "contents", "score"}, ...]
  asearcher tool access URL                  -> {"url", "text", "chars"}, or null for an unknown page

The call goes through the same tool backend as the agents (`tools.backend` of --config, built by
asearcher.tools.factory.make_tools), so the same settings apply: the local retrieval server found through
$ASEARCHER_RETRIEVAL_URL, or the web tools with their search endpoint, reader, URL guard and record/replay mode.
A failed call (after the backend's own retries), a page the URL guard refuses, or a replay without a recording is
an error on stderr with exit code 2.

  asearcher with-retrieval --index results/index/bm25 --pages .../wiki_webpages.jsonl -- \\
      asearcher tool search "capital of Australia" --topk 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from asearcher.config import load_config
from asearcher.errors import UserFacingError
from asearcher.tools.base import ToolBackend, ToolError

ACTIONS = ("search", "access")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=ACTIONS, help="search: a query; access: a page URL")
    p.add_argument("argument", help="the query (search) or the URL (access)")
    p.add_argument("--topk", type=int, help="search: number of results (default: agent.topk)")
    p.add_argument(
        "--record-dir",
        help="web tools: the recording directory of tools.web.record (default: tools.web.record_dir)",
    )
    p.add_argument("--compact", action="store_true", help="one-line JSON (default: indented)")


def build_tools(cfg: Any, record_dir: str | None = None) -> ToolBackend:
    """The configured tool backend; a missing retrieval server or an unusable config is a UserFacingError."""
    from asearcher.tools.factory import make_tools

    kwargs: dict[str, Any] = {}
    if record_dir is not None:
        kwargs["record_dir"] = record_dir
    try:
        return make_tools(cfg, **kwargs)
    except UserFacingError:
        raise
    except ToolError as e:
        raise UserFacingError(f"the {cfg.tools.backend} tools could not start: {e}") from None


def search_result(hits: list[Any]) -> list[dict[str, Any]]:
    return [{"url": h.url, "contents": h.contents, "score": h.score} for h in hits]


def access_result(url: str, text: str | None) -> dict[str, Any] | None:
    return None if text is None else {"url": url, "text": text, "chars": len(text)}


async def call_tool(tools: ToolBackend, action: str, argument: str, topk: int) -> Any:
    """The JSON-ready result of one call; a ToolError becomes a UserFacingError (exit 2)."""
    try:
        if action == "search":
            return search_result(list(await tools.search(argument, topk)))
        return access_result(argument, await tools.access(argument))
    except ToolError as e:
        raise UserFacingError(f"{action} failed ({tools.name} tools): {e}") from None
    finally:
        await tools.aclose()


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    topk = args.topk if args.topk is not None else cfg.agent.topk
    if topk < 1:
        raise UserFacingError(f"--topk must be >= 1, got {topk}")
    if args.action == "search" and not args.argument.strip():
        raise UserFacingError("the search query is empty")

    async def one_call() -> Any:  # the tools are built inside the event loop that uses them
        return await call_tool(build_tools(cfg, args.record_dir), args.action, args.argument, topk)

    out = asyncio.run(one_call())
    json.dump(out, sys.stdout, ensure_ascii=False, indent=None if args.compact else 2)
    sys.stdout.write("\n")
    return 0
