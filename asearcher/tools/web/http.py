"""What the web clients share: which failures are retried, error text that never carries a key, a body cap."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from asearcher.tools.base import ToolError
from asearcher.utils.retry import aretrying
from asearcher.utils.secrets import redact

T = TypeVar("T")

#: HTTP statuses worth another try (rate limit, server trouble)
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class Retryable(Exception):
    """A failure that may pass on another attempt (429, 5xx, connection and timeout errors)."""


class TooLarge(ToolError):
    """A body over the byte cap."""


def failed(message: str) -> ToolError:
    """A ToolError with a redacted message."""
    return ToolError(redact(message))


def describe_transport(e: BaseException) -> str:
    """A short, key-free description of an httpx transport failure."""
    kinds = [
        (httpx.TimeoutException, "timed out"),
        (httpx.RemoteProtocolError, "the connection was closed or broken mid-response"),
        (httpx.ConnectError, "connection failed"),
        (httpx.ReadError, "the connection failed while reading"),
    ]
    what = next((w for t, w in kinds if isinstance(e, t)), "transport error")
    detail = str(e).strip()
    return redact(f"{what} ({type(e).__name__}{': ' + detail[:200] if detail else ''})")


def body_excerpt(resp: httpx.Response, body: bytes | None = None) -> str:
    """At most 200 characters of an error body (`body`, else the read response's), redacted before the cut."""
    try:
        text = body.decode("utf-8", "replace") if body is not None else resp.text
    except Exception:  # a streamed response that was not read
        return ""
    return redact(" ".join(text.split()))[:200]


def check_status(resp: httpx.Response, what: str, body: bytes | None = None) -> None:
    """Retryable for statuses worth a retry; a ToolError for other non-2xx statuses (quoting the body)."""
    if resp.status_code in RETRY_STATUSES:
        raise Retryable(f"{what}: HTTP {resp.status_code} {body_excerpt(resp, body)}".rstrip())
    if not 200 <= resp.status_code < 300:
        raise failed(f"{what}: HTTP {resp.status_code} {body_excerpt(resp, body)}".rstrip())


async def error_body(resp: httpx.Response, what: str) -> bytes | None:
    """The first 64 KiB of a streamed error response's body (None when it cannot be read)."""
    try:
        return await read_capped(resp, 65536, what)
    except (ToolError, httpx.HTTPError):
        return None


async def read_capped(resp: httpx.Response, max_bytes: int, what: str) -> bytes:
    """The whole body of a streamed response, or TooLarge past max_bytes (stops reading there)."""
    length = resp.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise TooLarge(
            redact(f"{what}: the page is {int(length)} bytes, over the cap of {max_bytes} (max_page_bytes)")
        )
    chunks, n = [], 0
    async for chunk in resp.aiter_bytes():
        n += len(chunk)
        if n > max_bytes:
            raise TooLarge(redact(f"{what}: the page is over the cap of {max_bytes} bytes (max_page_bytes)"))
        chunks.append(chunk)
    return b"".join(chunks)


async def with_retries(
    attempt: Callable[[], Awaitable[T]], max_retries: int, backoff_s: float, what: str
) -> T:
    """Run attempt() with bounded retries on Retryable / transport errors; the last failure as a ToolError."""
    try:
        async for a in aretrying(max_retries, backoff_s, (Retryable, httpx.TransportError)):
            with a:
                return await attempt()
    except Retryable as e:
        raise failed(f"{e} (after {max_retries + 1} attempts)") from None
    except httpx.TransportError as e:
        raise failed(f"{what}: {describe_transport(e)} (after {max_retries + 1} attempts)") from None
    raise AssertionError("unreachable")  # pragma: no cover


def client_kwargs(trust_env: bool, keepalive: bool = True) -> dict[str, Any]:
    """httpx.AsyncClient settings shared by the web clients (redirects are never followed implicitly).
    keepalive=False: every request on a new connection (the direct reader connects to pinned IPs, and a pooled
    TLS connection made for one host name must not carry a request for another name on the same address)."""
    return dict(
        follow_redirects=False,
        trust_env=trust_env,
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=16 if keepalive else 0),
        headers={"User-Agent": "Mozilla/5.0 (compatible; asearcher-repro/0.1)"},
    )
