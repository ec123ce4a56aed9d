"""The hot endpoints' request path: orjson in and out, events checked without a model per event.

FastAPI validates a request by building one pydantic ``Event`` per event (the largest Python cost
of a cache miss: ~60-80 us for 100 events) and solves the endpoint's dependencies on every call
(about a third of a cache hit). :class:`FastRoute` keeps the FastAPI route (its OpenAPI document is
generated from the declared models as before) but answers a well-formed request itself: the body is
parsed with orjson, the request fields are validated by a twin model whose events are left as
JSON, and the event lists are checked as plain dicts (pydantic-core, one call per list) under
``Event``'s own constraints, then kept as tuples. A
request the walk is not sure of (anything a 422 could come from, invalid JSON, a route with auth
dependencies) goes to FastAPI's own handler, so every error keeps its shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, NamedTuple, NotRequired

import orjson
from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, StringConstraints, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from uservec.service.dependencies import request_timings
from uservec.service.metrics import Timings
from uservec.service.schemas import (
    DOMAIN_PATTERN,
    STRICT,
    EmbedRequest,
    ProfileRequest,
    RecommendRequest,
    RecommendUser,
    UserEvents,
)


class EventView(NamedTuple):
    """A checked event: what ``Event`` holds, without building one (``bundle.prepare`` reads it
    like an ``Event``)."""

    item_id: str
    domain: str | None = None
    timestamp: float | None = None


class _EventFields(TypedDict):
    """An event as ``Event`` validates it (same constraints, strict, no other key), as a dict:
    pydantic-core checks a whole list of these in one call, without a model per event."""

    __pydantic_config__ = STRICT  # type: ignore[misc]
    item_id: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    domain: NotRequired[Annotated[str, StringConstraints(max_length=128,
                                                         pattern=DOMAIN_PATTERN)] | None]
    timestamp: NotRequired[Annotated[float, Field(allow_inf_nan=False)] | None]


#: a JSON event list as ``list[Event]`` accepts it
EVENTS = TypeAdapter(list[_EventFields])


def check_events(raws: object) -> list[EventView] | None:
    """``raws`` as events when ``list[Event]`` accepts them; None when it refuses them."""
    try:
        events = EVENTS.validate_python(raws)
    except ValidationError:
        return None
    return [EventView(e["item_id"], e.get("domain"), e.get("timestamp")) for e in events]


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
