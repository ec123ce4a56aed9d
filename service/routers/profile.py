"""POST /predict-profile: user attributes (profile heads) from behaviour."""

from __future__ import annotations

from fastapi import APIRouter

from uservec.service.dependencies import RuntimeDep, TimingsDep
from uservec.service.errors import error_responses
from uservec.service.inference import predict_profiles
from uservec.service.routers.common import INFERENCE_ERRORS
from uservec.service.schemas import ProfileRequest, ProfileResponse

router = APIRouter(tags=["inference"])


@router.post(
    "/predict-profile",
    summary="Predict user attributes",
    description="Per user and attribute (all profile heads, or those in `attributes`): the "
    "predicted label and the probability of every label, read with `decision` (`as_trained`, "
    "the default, or `prior_adjusted`: the most probable label and calibrated probabilities).",
    responses=error_responses(*INFERENCE_ERRORS, "unknown_attribute", "decision_unavailable"),
)
async def predict_profile(
    body: ProfileRequest, runtime: RuntimeDep, timings: TimingsDep
) -> ProfileResponse:
    return await predict_profiles(runtime, body, timings)
