"""User state: append events, read and delete a user (docs/service.md#user-state)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from uservec.service.dependencies import RuntimeDep
from uservec.service.engine import USER_VECTOR, Bundle
from uservec.service.errors import InvalidRequest, error_responses
from uservec.service.inference import predict_attribute
from uservec.service.routers.common import INFERENCE_ERRORS
from uservec.service.user_schemas import (
    USER_ID_PATTERN,
    AppendRequest,
    DeletedResponse,
    UserStateResponse,
)
from uservec.service.user_state import UserRecord, append_events, delete_user, read_user

router = APIRouter(prefix="/v1/users", tags=["users"])

UserId = Annotated[str, Path(pattern=USER_ID_PATTERN,
                             description="1..128 of A-Z a-z 0-9 . _ : @ -")]
STATE_ERRORS = ("state_unavailable",)


def _response(user_id: str, bundle: Bundle, record: UserRecord) -> UserStateResponse:
    vector = record.outputs[USER_VECTOR]
    return UserStateResponse(
        user_id=user_id, bundle_version=bundle.version, events_total=record.total,
        events_stored=len(record.keys), known_events=record.known,
        last_timestamp=record.last_timestamp, vector=vector.astype(float).tolist(),
        dim=int(vector.size),
    )


@router.post(
    "/{user_id}/events",
    summary="Append events to a user's state",
    description="Appends the events (ordered like the training data) and returns the updated "
    "vector, and with `predict` every profile head's prediction. Appends for one user are "
    "atomic; an event older than the user's newest one is a 409 `out_of_order`.",
    responses=error_responses(*INFERENCE_ERRORS, "out_of_order", "state_conflict"),
)
async def append(user_id: UserId, body: AppendRequest, runtime: RuntimeDep) -> UserStateResponse:
    limit = runtime.settings.max_events_per_user
    if len(body.events) > limit:
        raise InvalidRequest(f"{len(body.events)} events in one append; at most {limit}",
                             code="too_many_events", details={"limit": limit})
    bundle = runtime.bundle
    done = await append_events(runtime.users, bundle, user_id, body.events, runtime.in_thread)
    response = _response(user_id, bundle, done.record)
    response.accepted, response.unknown_items = done.accepted, list(done.unknown_items)
    if body.predict:
        response.attributes = {
            head.name: predict_attribute(head, done.record.outputs[head.output], body.decision)
            for head in bundle.profile_heads.values()
            if head.prior_shift is not None or body.decision == "as_trained"
        }
    return response


@router.get(
    "/{user_id}",
    summary="A user's stored vector",
    responses=error_responses("validation_error", "user_not_found", "not_ready", *STATE_ERRORS),
)
async def get_user(user_id: UserId, runtime: RuntimeDep) -> UserStateResponse:
    bundle = runtime.bundle
    record = await read_user(runtime.users, bundle, user_id, runtime.in_thread)
    return _response(user_id, bundle, record)


@router.delete(
    "/{user_id}",
    summary="Delete a user's state (erasure)",
    description="Removes the user's state, the only thing the service keeps that is derived "
    "from the user's appended events (docs/service.md#erasure).",
    responses=error_responses("validation_error", "user_not_found", *STATE_ERRORS),
)
async def delete(user_id: UserId, runtime: RuntimeDep) -> DeletedResponse:
    await delete_user(runtime.users, user_id)
    return DeletedResponse(user_id=user_id)
