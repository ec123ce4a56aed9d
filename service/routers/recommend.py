"""POST /recommend: top-k items of a domain per user (cross-domain cold start)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from uservec.service.dependencies import request_timings
from uservec.service.errors import error_responses
from uservec.service.fastpath import FastRoute, fast_path
from uservec.service.inference import recommend_items
from uservec.service.routers.common import INFERENCE_ERRORS
from uservec.service.schemas import RecommendRequest, RecommendResponse

router = APIRouter(tags=["inference"], route_class=FastRoute)


@router.post(
    "/recommend",
    summary="Recommend items of a domain",
    description="Top-k items of `domain` by inner product with the user's query vector, "
    "excluding the user's own items (unless `exclude_seen` is false) and the ids in `exclude`. "
    "A user with no known event that the head reads gets the domain's most popular items and "
    '`fallback: "popularity"`.',
    responses=error_responses(
        *INFERENCE_ERRORS, "k_out_of_range", "unknown_domain", "too_many_excluded",
    ),
)
@fast_path(RecommendRequest, recommend_items)
async def recommend(body: RecommendRequest, request: Request) -> RecommendResponse:
    return await recommend_items(request.app.state.runtime, body, request_timings(request))
