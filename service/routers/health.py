"""Probes and metrics; always open (no API key), never limited."""

from __future__ import annotations

from fastapi import APIRouter, Response

from uservec.service.dependencies import RuntimeDep
from uservec.service.errors import NotReady, error_responses
from uservec.service.schemas import HealthResponse

router = APIRouter(tags=["operations"])


@router.get("/health/live", summary="Liveness: the process answers")
async def live() -> HealthResponse:
    return HealthResponse(status="live")


@router.get(
    "/health/ready",
    summary="Readiness: a checked bundle is loaded",
    responses=error_responses("not_ready"),
)
async def ready(runtime: RuntimeDep) -> HealthResponse:
    bundle = runtime.current
    if bundle is None or not runtime.ready:
        raise NotReady("shutting down" if runtime.shutting_down else "no bundle is loaded yet")
    return HealthResponse(status="ready", bundle_version=bundle.version)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"example": "uservec_batch_size_count 12.0\n"}}}},
)
async def metrics(runtime: RuntimeDep) -> Response:
    body, content_type = runtime.metrics.render()
    return Response(body, media_type=content_type)
