"""POST /embed: the universal user vector of each user."""

from __future__ import annotations

from fastapi import APIRouter, Request

from uservec.service.dependencies import request_timings
from uservec.service.errors import error_responses
from uservec.service.fastpath import FastRoute, fast_path
from uservec.service.inference import embed_users
from uservec.service.routers.common import INFERENCE_ERRORS
from uservec.service.schemas import EmbedRequest, EmbedResponse

router = APIRouter(tags=["inference"], route_class=FastRoute)


@router.post(
    "/embed",
    summary="Universal user vectors",
    description="One vector per user from their behaviour sequence (oldest event first). The "
    "model reads the latest `max_len` events; unknown item ids are reported, not rejected.",
    responses=error_responses(*INFERENCE_ERRORS),
)
@fast_path(EmbedRequest, embed_users)
async def embed(body: EmbedRequest, request: Request) -> EmbedResponse:
    return await embed_users(request.app.state.runtime, body, request_timings(request))
