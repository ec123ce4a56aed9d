"""POST /predict-profile: user attributes (profile heads) from behaviour."""

from __future__ import annotations

from fastapi import APIRouter, Request

from uservec.service.dependencies import request_timings
from uservec.service.errors import error_responses
from uservec.service.fastpath import FastRoute, fast_path
from uservec.service.inference import predict_profiles
from uservec.service.routers.common import INFERENCE_ERRORS
from uservec.service.schemas import ProfileRequest, ProfileResponse

router = APIRouter(tags=["inference"], route_class=FastRoute)


@router.post(
    "/predict-profile",
    summary="Predict user attributes",
    description="Per user and attribute (all profile heads, or those in `attributes`): the "
    "predicted label and the probability of every label, read with `decision` (`as_trained`, "
    "the default, or `prior_adjusted`: the most probable label and calibrated probabilities).",
    responses=error_responses(*INFERENCE_ERRORS, "unknown_attribute", "decision_unavailable"),
)
@fast_path(ProfileRequest, predict_profiles)
async def predict_profile(body: ProfileRequest, request: Request) -> ProfileResponse:
    return await predict_profiles(request.app.state.runtime, body, request_timings(request))
