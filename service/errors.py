"""One error hierarchy and one JSON shape: ``{"error": {"code", "message", "details"}}``.

Clients branch on ``code`` (stable, documented in :data:`ERROR_CODES`), never on the message. Domain
modules raise :class:`ServiceError` subclasses; :func:`install_error_handlers` turns them, FastAPI's
validation errors, malformed JSON and unexpected exceptions into that one shape.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

logger = logging.getLogger(__name__)

#: Every code the service returns, with its HTTP status. Part of the public API: do not rename.
ERROR_CODES: dict[str, int] = {
    "invalid_json": 400,
    "missing_api_key": 401,
    "invalid_api_key": 403,
    "not_found": 404,
    "user_not_found": 404,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "bundle_rejected": 409,
    "reload_in_progress": 409,
    "out_of_order": 409,
    "state_conflict": 409,
    "payload_too_large": 413,
    "headers_too_large": 431,
    "unsupported_media_type": 415,
    "validation_error": 422,
    "finite_number": 422,
    "too_many_users": 422,
    "too_many_events": 422,
    "too_many_excluded": 422,
    "k_out_of_range": 422,
    "unknown_domain": 422,
    "domain_required": 422,
    "unknown_attribute": 422,
    "decision_unavailable": 422,
    "too_many_requests": 429,
    "internal_error": 500,
    "not_ready": 503,
    "state_unavailable": 503,
}


class ServiceError(Exception):
    """An error with a stable code; its HTTP status comes from :data:`ERROR_CODES`."""

    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        if self.code not in ERROR_CODES:
            raise ValueError(f"undocumented error code {self.code!r}")
        self.message = message
        self.details = details
        self.headers = headers

    @property
    def status_code(self) -> int:
        return ERROR_CODES[self.code]


class InvalidRequest(ServiceError):
    """The request is well-formed JSON but breaks a rule (a limit, an unknown domain...)."""

    code = "validation_error"


class AuthError(ServiceError):
    code = "missing_api_key"


class NotReady(ServiceError):
    code = "not_ready"


class BundleRejected(ServiceError):
    """A reload was refused; the previous bundle keeps serving."""

    code = "bundle_rejected"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


class ErrorJSONResponse(JSONResponse):
    """Error messages echo request text, which may hold lone surrogates (valid JSON escapes, not
    encodable as UTF-8): they are written as '?' instead of failing the error response itself."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode("utf-8", errors="replace")


def error_response(
    code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The one error response; usable from middleware (a ``JSONResponse`` is an ASGI app)."""
    return ErrorJSONResponse(
        error_body(code, message, details), status_code=ERROR_CODES[code], headers=headers
    )


def _is_non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Pydantic errors without echoing the input (it may be large or sensitive).

    A NaN, Infinity or overflowing number (``1e400``) is a ``finite_number`` error wherever it is
    sent, also where the field wanted an integer or a string: the client's problem is the same.
    """
    return [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")),
         "type": "finite_number" if _is_non_finite(err.get("input")) else err.get("type")}
        for err in exc.errors()
    ]


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(exc.code, exc.message, exc.details, exc.headers)


def invalid_json(reason: str, position: int | None = None) -> JSONResponse:
    """The one answer to a body that is not parseable JSON, whatever the parser tripped on."""
    return error_response("invalid_json", f"request body is not valid JSON: {reason}",
                          {"reason": reason, "position": position})


def _parse_failure(cause: BaseException | None) -> tuple[str, int | None]:
    """Why FastAPI could not parse a body (it reports every cause but one as a bare 400)."""
    if isinstance(cause, UnicodeDecodeError):
        return "the body is not UTF-8 text", cause.start
    if isinstance(cause, RecursionError):
        return "the body is nested too deeply", None
    if isinstance(cause, ValueError) and str(cause):
        return str(cause).split(";")[0], None  # e.g. an integer longer than 4300 digits
    return "the body cannot be parsed", None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            loc = list(err.get("loc", ()))
            position = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
            return invalid_json(str((err.get("ctx") or {}).get("error", "decode error")),
                                position)
    details = _validation_details(exc)
    if any(d["type"] == "finite_number" for d in details):
        return error_response("finite_number", "numbers must be finite: NaN, Infinity and "
                              "values beyond the float range are refused", details)
    return error_response("validation_error", "request does not match the schema", details)


_HTTP_CODES = {401: "missing_api_key", 403: "invalid_api_key", 404: "not_found",
               405: "method_not_allowed", 408: "request_timeout", 413: "payload_too_large",
               415: "unsupported_media_type", 429: "too_many_requests", 503: "not_ready"}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # FastAPI's "There was an error parsing the body"
        return invalid_json(*_parse_failure(exc.__cause__))
    code = _HTTP_CODES.get(exc.status_code)
    if code is None:
        code = "validation_error" if exc.status_code < 500 else "internal_error"
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:  # Starlette names only the first route of the path
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    response = error_response(code, str(exc.detail), None, headers)
    response.status_code = exc.status_code
    return response


def _allowed_methods(request: Request) -> str:
    """Every method of every route on the request's path (several routes may share a path)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    logger.exception("unhandled error on %s %s (request id %s)", request.method,
                     request.url.path, request_id)
    # Starlette sends this response outside the request middleware, which adds the id to every
    # other response: the one a client most needs to quote must carry it too
    headers = {"X-Request-ID": request_id} if request_id else None
    return error_response("internal_error", "internal server error", headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error the app can raise through :func:`error_response`."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


def error_responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entry documenting the given error codes, with an example each."""
    from uservec.service.schemas import (
        ErrorResponse,  # schemas must not depend on errors: import here
    )

    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        status = ERROR_CODES[code]
        entry = out.setdefault(status, {"model": ErrorResponse, "content": {
            "application/json": {"examples": {}}}})
        entry["content"]["application/json"]["examples"][code] = {
            "summary": code, "value": error_body(code, _EXAMPLE_MESSAGES.get(code, code))
        }
    return out


_EXAMPLE_MESSAGES = {
    "invalid_json": "request body is not valid JSON: Expecting ',' delimiter",
    "request_timeout": "the request body did not arrive within 5 s",
    "finite_number": "numbers must be finite: NaN, Infinity and values beyond the float range "
    "are refused",
    "missing_api_key": "missing API key: send 'Authorization: Bearer <key>'",
    "invalid_api_key": "the API key is not valid",
    "payload_too_large": "request body exceeds 1048576 bytes",
    "headers_too_large": "the request head exceeds 65536 bytes",
    "unsupported_media_type": "send the body as JSON with 'Content-Type: application/json'",
    "too_many_excluded": "at most 1000 excluded ids in user 0's 'exclude', got 1200",
    "validation_error": "request does not match the schema",
    "too_many_users": "at most 64 users per request, got 65",
    "too_many_events": "user 0 has 1001 events; at most 1000 are accepted",
    "k_out_of_range": "k must be between 1 and 100, got 0",
    "unknown_domain": "no recommendation head for domain 'music'",
    "domain_required": "user 0, event 2: item '42' is in no domain or in several of this "
    "bundle's; say which with 'domain'",
    "unknown_attribute": "unknown profile attributes ['height']",
    "decision_unavailable": "decision 'prior_adjusted' needs the heads' training label prior, "
    "and this bundle has none for ['gender']",
    "too_many_requests": "more than 64 requests in flight; retry after 1 s",
    "not_ready": "no bundle is loaded yet",
    "method_not_allowed": "Method Not Allowed",
    "bundle_rejected": "bundle refused: model.onnx: sha256 mismatch",
    "reload_in_progress": "another reload is in progress",
}
