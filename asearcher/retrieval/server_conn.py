"""Connection guards for the retrieval server: a deadline and a size cap for the request head.

uvicorn closes idle keep-alive connections (timeout_keep_alive = retrieval.server.idle_timeout_s), but it has
no deadline for a request head: a client that connects and sends nothing, half of its headers, or a byte a
minute holds a connection (and a file descriptor) forever, and httptools buffers headers without limit.
`guarded_protocol` subclasses uvicorn's own protocol (httptools or h11) to add both. The body is bounded by the
handler (server_limits.read_body: size and time while streaming).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asearcher.config import ServerConfig

from .batcher import Stats
from .server_limits import dumps

log = logging.getLogger(__name__)

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def _reply_and_close(transport: asyncio.Transport, status: int, message: str) -> None:
    body = dumps({"error": message, "detail": message})
    transport.write(
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        % (status, _REASONS[status], len(body))
        + body
    )
    transport.close()


def guarded_protocol(base: type, scfg: ServerConfig, stats: Stats) -> type:
    """uvicorn protocol class `base` with a head deadline (header_timeout_s) and cap (max_header_bytes).

    The deadline runs from the connection's opening, or from the first byte after a response, to the end of the
    head; it is a deadline, not an idle timer, so trickling bytes does not extend it.
    """
    timeout_s, max_bytes = scfg.header_timeout_s, scfg.max_header_bytes

    class GuardedProtocol(base):  # type: ignore[misc, valid-type]
        _head_timer: asyncio.TimerHandle | None = None
        _head_cycle: Any = None
        _head_bytes = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._head_timer is None and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # the next request on a kept-alive connection
            if self._head_timer is not None:
                self._head_bytes += len(data)
            super().data_received(data)
            if self._head_timer is None:
                return
            if self.cycle is not self._head_cycle:  # the head is complete (the parser made a new cycle)
                self._disarm()
            elif self._head_bytes > max_bytes and not self.transport.is_closing():
                self._disarm()
                stats.connections["oversized_heads"] += 1
                log.info("closing a connection from %s: request head over %d bytes", self.client, max_bytes)
                _reply_and_close(
                    self.transport,
                    431,
                    f"request head is over {max_bytes} bytes (retrieval.server.max_header_bytes)",
                )

        def _arm(self) -> None:
            self._head_cycle = self.cycle
            self._head_bytes = 0
            self._head_timer = self.loop.call_later(timeout_s, self._head_expired)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_expired(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            stats.connections["header_timeouts"] += 1
            log.info(
                "closing a connection from %s: no complete request head within %gs (%d bytes)",
                self.client,
                timeout_s,
                self._head_bytes,
            )
            if self._head_bytes:
                message = (
                    f"request head not received within {timeout_s:g}s (retrieval.server.header_timeout_s)"
                )
                _reply_and_close(self.transport, 408, message)
            else:  # nothing sent: just close, as for an idle keep-alive connection
                self.transport.close()

    GuardedProtocol.__name__ = GuardedProtocol.__qualname__ = f"Guarded{base.__name__}"
    return GuardedProtocol
