"""Pure ASGI middleware: request context (timing, id, access log, metrics) and request limits.

Pure ASGI rather than ``BaseHTTPMiddleware``: the endpoint runs in the same task, the body can be
buffered and replayed, and limits answer before any routing or parsing happens.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Collection
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from uservec.service.admission import Admission
from uservec.service.errors import error_response
from uservec.service.metrics import Metrics, Timings

access_logger = logging.getLogger("uservec.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
#: status recorded for a request whose client disconnected before any response (nginx's code)
CLIENT_CLOSED = 499


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class RequestContextMiddleware:
    """Request id, ``Server-Timing``, per-endpoint latency histogram, JSON access log; and, with
    ``limits``, the request limits (:class:`LimitsMiddleware`) inside it.

    The app's one middleware: each ASGI layer costs every request a call and a wrapped ``send``,
    so the limits run as this middleware's inner app instead of as a second middleware.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, known_paths: Collection[str],
                 limits: dict[str, Any] | None = None) -> None:
        self.app: ASGIApp = app if limits is None else LimitsMiddleware(app, metrics=metrics,
                                                                         **limits)
        self.metrics = metrics
        self.known_paths = frozenset(known_paths)

    def _endpoint(self, scope: Scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None) or scope["path"]
        return path if path in self.known_paths else "other"  # bounded label cardinality

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        timings = Timings()
        state = scope.setdefault("state", {})
        state["timings"] = timings
        # the 500 of an unhandled error is sent outside this middleware (Starlette's outermost
        # ServerErrorMiddleware): its handler reads the id from here
        state["request_id"] = request_id
        status: int | None = None
        failed = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                total = time.perf_counter() - start
                headers.append((b"server-timing", timings.header(total).encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except BaseException:
            failed = True
            raise
        finally:
            if status is None:
                # nothing sent: an unhandled error (its 500 goes out after this middleware), or
                # the client went away before a response (nginx's 499, not a server error)
                status = 500 if failed else CLIENT_CLOSED
            duration = time.perf_counter() - start
            endpoint = self._endpoint(scope)
            timings.observe(self.metrics)
            self.metrics.requests.labels(
                endpoint=endpoint, method=scope["method"], status=str(status)
            ).observe(duration)
            if access_logger.isEnabledFor(logging.INFO):  # the record costs ~10 us to build
                self._log(scope, request_id, endpoint, status, duration, timings)

    @staticmethod
    def _log(scope: Scope, request_id: str, endpoint: str, status: int, duration: float,
             timings: Timings) -> None:
        fields: dict[str, Any] = {
            "request_id": request_id,
            "method": scope["method"],
            "path": scope["path"],
            "endpoint": endpoint,
            "status": status,
            "duration_ms": round(duration * 1000, 3),
            "stages_ms": {k: round(v * 1000, 3) for k, v in timings.stages.items()},
            "client": (scope.get("client") or ("", 0))[0],
        }
        access_logger.info(
            "%s %s %d %.1fms", scope["method"], scope["path"], status, duration * 1000,
            extra={"fields": fields},
        )


class LimitsMiddleware:
    """Admission of API requests, before any routing or parsing.

    The body is read first, under a deadline (``body_timeout_s``: 408 and the connection closed
    when it has not fully arrived), and buffered up to ``max_body_bytes`` (413); only then does
    the request take an in-flight slot (429 + ``Retry-After`` when none is free), so a slow or
    stalled upload never keeps other clients out. A body not declared as JSON (curl's default
    form encoding, text/plain) or sent compressed is a 415.

    ``open_paths`` and paths under ``open_prefixes`` (probes, metrics, docs) skip all of this: a
    probe must answer under load.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        admission: Admission,
        max_body_bytes: int,
        body_timeout_s: float,
        retry_after_s: int,
        open_paths: Collection[str] = (),
        open_prefixes: Collection[str] = (),
    ) -> None:
        self.app = app
        self.open_paths = frozenset(open_paths)
        self.open_prefixes = tuple(open_prefixes)
        self.metrics = metrics
        self.admission = admission
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.retry_after_s = retry_after_s

    def _is_open(self, path: str) -> bool:
        return path in self.open_paths or path.startswith(self.open_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        self.admission.receiving += 1
        self.metrics.receiving.inc()
        try:
            replay = await self._read_body(scope, receive, send)
        finally:
            self.admission.receiving -= 1
            self.metrics.receiving.dec()
        if replay is None:
            return
        if not self.admission.try_acquire():
            self.metrics.rejected.labels(reason="in_flight").inc()
            limit = self.admission.max_concurrent
            response = error_response(
                "too_many_requests",
                f"more than {limit} requests in flight; retry after {self.retry_after_s} s",
                {"max_concurrent_requests": limit},
                headers={"Retry-After": str(self.retry_after_s)},
            )
            await response(scope, replay, send)
            return
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, replay, send)
        finally:
            self.admission.release()
            self.metrics.in_flight.dec()

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, reason: str,
                      code: str, message: str, details: dict[str, Any]) -> None:
        """Answer before the body was read to its end: the connection cannot be reused."""
        self.metrics.rejected.labels(reason=reason).inc()
        response = error_response(code, message, details, headers={"Connection": "close"})
        await response(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._refuse(scope, receive, send, "body_size", "payload_too_large",
                           f"request body exceeds {self.max_body_bytes} bytes",
                           {"max_body_bytes": self.max_body_bytes})

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Buffer the body and return a receive that replays it (None: answered or gone)."""
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                await self._refuse(
                    scope, receive, send, "body_timeout", "request_timeout",
                    f"the request body did not arrive within {self.body_timeout_s:g} s",
                    {"body_timeout_s": self.body_timeout_s, "received_bytes": size})
                return None
            if message["type"] != "http.request":  # client went away
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large(scope, receive, send)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        refusal = _media_problem(scope) if body else None
        if refusal is not None:
            await error_response("unsupported_media_type", *refusal)(scope, receive, send)
            return None
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


def _media_problem(scope: Scope) -> tuple[str, dict[str, Any]] | None:
    """Why a body cannot be read as JSON from its headers (None: it can)."""
    content_type = _header(scope, b"content-type")
    if not _is_json(content_type):
        return ("send the body as JSON with 'Content-Type: application/json'",
                {"content_type": content_type})
    encoding = (_header(scope, b"content-encoding") or "identity").strip().lower()
    if encoding != "identity":
        return ("compressed bodies are not accepted; send the JSON uncompressed",
                {"content_encoding": encoding})
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per line; access-log records add their ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)
