"""POST /embed: the universal user vector of each user."""

from __future__ import annotations

from fastapi import APIRouter

from uservec.service.dependencies import RuntimeDep, TimingsDep
from uservec.service.errors import error_responses
from uservec.service.inference import embed_users
from uservec.service.routers.common import INFERENCE_ERRORS
from uservec.service.schemas import EmbedRequest, EmbedResponse

router = APIRouter(tags=["inference"])


@router.post(
    "/embed",
    summary="Universal user vectors",
    description="One vector per user from their behaviour sequence (oldest event first). The "
    "model reads the latest `max_len` events; unknown item ids are reported, not rejected.",
    responses=error_responses(*INFERENCE_ERRORS),
)
async def embed(body: EmbedRequest, runtime: RuntimeDep, timings: TimingsDep) -> EmbedResponse:
    return await embed_users(runtime, body, timings)
