"""POST /admin/reload: swap in a new bundle without a restart (admin key required)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from uservec.service.dependencies import RuntimeDep
from uservec.service.errors import error_responses
from uservec.service.schemas import ReloadRequest, ReloadResponse

router = APIRouter(tags=["admin"])


@router.post(
    "/admin/reload",
    summary="Load, check and atomically swap in a bundle",
    description="Without a body, reloads the current bundle path from disk (as SIGHUP does). "
    "Requests in flight finish on the old bundle. A bundle that fails any check is refused "
    "with 409 `bundle_rejected` and the old one keeps serving.",
    responses=error_responses(
        "bundle_rejected", "reload_in_progress", "invalid_json", "payload_too_large",
        "unsupported_media_type", "validation_error", "request_timeout", "too_many_requests",
    ),
)
async def reload(
    runtime: RuntimeDep, body: Annotated[ReloadRequest | None, Body()] = None
) -> ReloadResponse:
    result = await runtime.reload(body.bundle_path if body else None)
    return ReloadResponse(
        previous_version=result.previous_version,
        bundle_version=result.bundle.version,
        bundle_path=str(result.bundle.path),
        duration_ms=round(result.duration_s * 1000, 3),
    )
