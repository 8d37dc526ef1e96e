"""Web tools (tools.backend: web): a Serper-compatible search API, a page reader (Jina-style service or a direct
fetch), the URL guard for model-chosen page URLs, and record / replay of every response (see docs/web.md)."""

from .backend import WebTools, check_keys, make_web_tools, required_keys
from .guard import Target, UrlGuard, URLRefused, refusal

__all__ = [
    "Target",
    "URLRefused",
    "UrlGuard",
    "WebTools",
    "check_keys",
    "make_web_tools",
    "refusal",
    "required_keys",
]
