"""Probes and metrics; always open (no API key), never limited; GET and HEAD alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Response

from uservec.service.dependencies import AdmissionDep, RuntimeDep
from uservec.service.errors import NotReady, error_responses
from uservec.service.schemas import HealthResponse

router = APIRouter(tags=["operations"])


def probe(path: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a handler for GET and HEAD (load balancers probe with either)."""

    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        router.add_api_route(path, handler, methods=["GET"], **options)
        router.add_api_route(path, handler, methods=["HEAD"], name=f"{handler.__name__}_head",
                             **options)
        return handler

    return register


@probe("/health/live", summary="Liveness: the process answers",
       description="Always 200 while the process runs; `bundle_version` is the bundle being "
       "served (null before one is loaded).")
async def live(runtime: RuntimeDep) -> HealthResponse:
    bundle = runtime.current
    return HealthResponse(status="live", bundle_version=bundle.version if bundle else None)


@probe(
    "/health/ready",
    summary="Readiness: a checked bundle is loaded and requests are being admitted",
    description="503 `not_ready` with `details.reason`: `no_bundle` (none loaded yet), "
    "`shutting_down`, or `saturated` (a request was refused for lack of an in-flight slot "
    "within the last USERVEC_SATURATION_WINDOW_S seconds).",
    responses=error_responses("not_ready"),
)
async def ready(runtime: RuntimeDep, admission: AdmissionDep) -> HealthResponse:
    bundle = runtime.current
    if runtime.shutting_down:
        raise NotReady("shutting down", details={"reason": "shutting_down"})
    if bundle is None:
        raise NotReady("no bundle is loaded yet", details={"reason": "no_bundle"})
    saturation = admission.saturation()
    if saturation is not None:
        raise NotReady(
            f"saturated: {saturation.refused_in_window} request(s) refused for lack of an "
            f"in-flight slot in the last {admission.saturation_window_s:g} s",
            details={"reason": "saturated", "in_flight": saturation.in_flight,
                     "max_concurrent_requests": saturation.max_concurrent,
                     "refused": saturation.refused_in_window,
                     "last_refused_s_ago": round(saturation.last_refused_s_ago, 3)},
        )
    return HealthResponse(status="ready", bundle_version=bundle.version)


@probe(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"example": "uservec_batch_size_count 12.0\n"}}}},
)
async def metrics(runtime: RuntimeDep) -> Response:
    body, content_type = runtime.metrics.render()
    return Response(body, media_type=content_type)
