"""Request and response models of the user-state endpoints (``/v1/users/{user_id}``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from uservec.contract.decision import Decision
from uservec.service.schemas import STRICT, AttributePrediction, Event

#: what a user id may hold: it becomes part of a store key, so no spaces, slashes or braces
USER_ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"


class AppendRequest(BaseModel):
    """Events to append to the user's state, oldest first."""

    model_config = ConfigDict(**STRICT, json_schema_extra={"examples": [{
        "events": [{"item_id": "50", "timestamp": 881250949.0},
                   {"item_id": "172", "timestamp": 881251100.0}],
        "predict": True,
    }]})
    events: list[Event] = Field(
        min_length=1,
        description="JSON array of 1..USERVEC_MAX_EVENTS_PER_USER events (default 1000), oldest "
        "first. An event older than the user's newest stored event is a 409 `out_of_order`")
    predict: bool = Field(False, description="JSON boolean: also return every profile head's "
                          "prediction from the updated state")
    decision: Decision = Field("as_trained", description="JSON string: the decision rule for "
                               "`predict` (as in /predict-profile)")


class UserStateResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "user_id": "u42", "bundle_version": "ml100k-2024-06-01-3f2a9c1b", "events_total": 2,
        "events_stored": 2, "known_events": 2, "last_timestamp": 881251100.0,
        "vector": [0.12, -0.03, 0.4], "dim": 3, "accepted": 2, "unknown_items": [],
        "attributes": None,
    }]})
    user_id: str
    bundle_version: str = Field(description="the bundle the state was computed with")
    events_total: int = Field(description="events appended since the state began")
    events_stored: int = Field(description="latest events kept with the state (<= max_len)")
    known_events: int = Field(description="appended events whose item the bundle knows")
    last_timestamp: float | None = Field(description="the newest event's timestamp, if any")
    vector: list[float]
    dim: int
    accepted: int | None = Field(None, description="events this append added")
    unknown_items: list[str] = Field(default_factory=list,
                                     description="unknown item ids among this append's events")
    attributes: dict[str, AttributePrediction] | None = Field(
        None, description="with `predict`: every profile head's prediction")


class DeletedResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"user_id": "u42",
                                                               "deleted": True}]})
    user_id: str
    deleted: bool = True
