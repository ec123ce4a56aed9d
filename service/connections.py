"""Connection-level deadlines uvicorn does not have: a request head must arrive in time and fit.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but waits forever for the
head of a request: a client that opens a connection and sends nothing, or one header line a
minute, holds a socket and a parser for as long as it likes, and an endless header section grows
in memory. :func:`protocol_class` returns uvicorn's httptools protocol with both limits added:
the head (request line and headers) must be complete ``header_timeout_s`` after the connection
opened or after the previous response, and fit in ``max_header_bytes``. Bodies have their own
deadline in the application (:class:`service.middleware.LimitsMiddleware`), where the answer is a
408 in the service's error shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from uservec.service.errors import error_body

logger = logging.getLogger(__name__)

try:  # uvicorn[standard] installs httptools; without it uvicorn's h11 protocol is used as is
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    HAVE_HTTPTOOLS = True
except ImportError:  # pragma: no cover - the serve extra always has it
    HAVE_HTTPTOOLS = False


def raw_error(status: int, reason: str, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 error response in the service's error shape, closing the connection."""
    body = json.dumps(error_body(code, message)).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("latin-1") + body


def protocol_class(header_timeout_s: float, max_header_bytes: int) -> Any:
    """uvicorn's httptools protocol with a head deadline and a head size limit ("h11" without
    httptools: uvicorn's h11 protocol, whose ``h11_max_incomplete_event_size`` bounds the size)."""
    if not HAVE_HTTPTOOLS:  # pragma: no cover
        logger.warning("httptools is not installed: no request-head deadline")
        return "h11"

    class DeadlineProtocol(HttpToolsProtocol):
        """Closes a connection whose request head is late (408) or too large (431)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_timer: asyncio.TimerHandle | None = None
            self._head_bytes = 0
            self._awaiting_head = False

        def _arm(self) -> None:
            """A request head is due: from the connection's start or a request's first byte."""
            self._awaiting_head = True
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(header_timeout_s, self._head_late)

        def _disarm(self) -> None:
            self._awaiting_head = False
            self._head_bytes = 0
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _refuse(self, response: bytes | None) -> None:
            self._disarm()
            if not self.transport.is_closing():
                if response is not None:
                    self.transport.write(response)
                self.transport.close()

        def _head_late(self) -> None:
            self._head_timer = None
            # silence (no byte of a request yet) is closed silently, as an idle keep-alive is
            answer = raw_error(408, "Request Timeout", "request_timeout",
                               f"the request head did not arrive within {header_timeout_s:g} s")
            self._refuse(answer if self._head_bytes else None)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            # counted only while a head is still incomplete after this chunk: a body that
            # arrives in one chunk with its head does not count against the head's limit
            if self._awaiting_head:
                self._head_bytes += len(data)
                if self._head_bytes > max_header_bytes:
                    self._refuse(raw_error(
                        431, "Request Header Fields Too Large", "headers_too_large",
                        f"the request head exceeds {max_header_bytes} bytes"))

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

    return DeadlineProtocol
