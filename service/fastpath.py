"""The hot endpoints' request path: orjson in and out, events checked without a model per event.

FastAPI validates a request by building one pydantic ``Event`` per event (the largest Python cost
of a cache miss: ~60-80 us for 100 events) and solves the endpoint's dependencies on every call
(about a third of a cache hit). :class:`FastRoute` keeps the FastAPI route (its OpenAPI document is
generated from the declared models as before) but answers a well-formed request itself: the body is
parsed with orjson, the request fields are validated by a twin model whose events are left as
JSON, and each event is checked by a plain walk that accepts exactly what ``Event`` accepts. A
request the walk is not sure of (anything a 422 could come from, invalid JSON, a route with auth
dependencies) goes to FastAPI's own handler, so every error keeps its shape.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NamedTuple

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, ValidationError

from uservec.service.dependencies import request_timings
from uservec.service.metrics import Timings
from uservec.service.schemas import (
    EmbedRequest,
    ProfileRequest,
    RecommendRequest,
    RecommendUser,
    UserEvents,
)

#: the Event fields (service.schemas.Event): an event with any other key is a 422
_EVENT_KEYS = frozenset({"item_id", "domain", "timestamp"})
_MAX_ITEM_ID, _MAX_DOMAIN = 512, 128


class EventView(NamedTuple):
    """A checked event: what ``Event`` holds, without building one (``bundle.prepare`` reads it
    like an ``Event``)."""

    item_id: str
    domain: str | None = None
    timestamp: float | None = None


def check_event(raw: object) -> EventView | None:
    """``raw`` as an event when ``Event`` accepts it exactly so; None when it might not."""
    if type(raw) is not dict or not raw.keys() <= _EVENT_KEYS:
        return None
    item_id = raw.get("item_id")
    if type(item_id) is not str or not 1 <= len(item_id) <= _MAX_ITEM_ID:
        return None
    domain = raw.get("domain")
    if domain is not None and (type(domain) is not str or len(domain) > _MAX_DOMAIN
                               or ":" in domain):
        return None
    timestamp = raw.get("timestamp")
    if timestamp is not None:
        if type(timestamp) not in (int, float) or not math.isfinite(timestamp):
            return None
        timestamp = float(timestamp)
    return EventView(item_id, domain, timestamp)


def check_events(raws: list[Any]) -> list[EventView] | None:
    events = []
    for raw in raws:
        event = check_event(raw)
        if event is None:
            return None
        events.append(event)
    return events


# twins of the request models whose events stay JSON (checked by check_events instead)
class _LooseUser(UserEvents):
    events: list[Any] = Field()


class _LooseRecommendUser(RecommendUser):
    events: list[Any] = Field()


class _LooseEmbed(EmbedRequest):
    users: list[_LooseUser] = Field(min_length=1)  # type: ignore[assignment]


class _LooseProfile(ProfileRequest):
    users: list[_LooseUser] = Field(min_length=1)  # type: ignore[assignment]


class _LooseRecommend(RecommendRequest):
    users: list[_LooseRecommendUser] = Field(min_length=1)  # type: ignore[assignment]


_LOOSE: dict[type[BaseModel], type[BaseModel]] = {
    EmbedRequest: _LooseEmbed, ProfileRequest: _LooseProfile, RecommendRequest: _LooseRecommend,
}


def parse_request(body: bytes, model: type[BaseModel]) -> BaseModel | None:
    """The request ``body`` as an instance of (a twin of) ``model``, events as
    :class:`EventView`; None when FastAPI's own validation must decide (it may be a 422)."""
    try:
        raw = orjson.loads(body)
        request = _LOOSE[model].model_validate(raw)
    except (orjson.JSONDecodeError, ValidationError):
        return None
    for user in request.users:  # type: ignore[attr-defined]
        events = check_events(user.events)
        if events is None:
            return None
        user.events = events
    return request


#: what a fast endpoint computes: (runtime, request, timings) -> response model
Compute = Callable[[Any, Any, Timings], Awaitable[BaseModel]]


def fast_path(model: type[BaseModel], compute: Compute) -> Callable[[Any], Any]:
    """Mark an endpoint function as served by :class:`FastRoute` with ``compute``."""

    def mark(endpoint: Any) -> Any:
        endpoint.fast_path = (model, compute)
        return endpoint

    return mark


def json_response(model: BaseModel) -> Response:
    return Response(orjson.dumps(model.model_dump()), media_type="application/json")


class FastRoute(APIRoute):
    """A route whose marked endpoint (:func:`fast_path`) answers well-formed requests without
    FastAPI's validation and dependency solving; everything else (and every request while API
    keys are configured) takes FastAPI's path."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        slow = super().get_route_handler()
        marked = getattr(self.endpoint, "fast_path", None)
        if marked is None or self.dependant.dependencies:
            return slow  # auth dependencies, or nothing to do fast
        model, compute = marked

        async def handler(request: Request) -> Response:
            # with API keys the route carries the key check as a dependency (service.app._auth):
            # FastAPI runs it (an included route's dependencies are not on this route)
            settings = getattr(request.app.state, "settings", None)
            if settings is None or settings.api_keys:
                return await slow(request)
            parsed = parse_request(await request.body(), model)
            if parsed is None:
                return await slow(request)  # the body is cached on the request
            response = await compute(request.app.state.runtime, parsed,
                                      request_timings(request))
            return json_response(response)

        return handler
