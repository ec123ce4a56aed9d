"""Request and response models of the public API (request/response pairs per endpoint).

Shapes and types are declared here; limits that operators tune (users per request, events per user,
``k``) are settings, checked by :func:`service.limits.check_users` and documented in each field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from uservec.contract.decision import Decision

#: a domain name must not contain ':' (it separates domain and item id in item keys)
DOMAIN_PATTERN = r"^[^:]*$"

#: request models take JSON types as they are: a number is never read as a string, nor a string
#: or a boolean as a number (``"k": "5"``, ``"k": true``, ``"item_id": 7`` are 422s)
STRICT = ConfigDict(extra="forbid", strict=True)


def _integral(value: Any) -> Any:
    """``5.0`` is the JSON number 5 (JSON Schema's "integer" accepts it): read it as 5."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: a JSON integer: a number without a fraction (``5`` or ``5.0``), never a string or a boolean
JsonInt = Annotated[int, BeforeValidator(_integral)]


class Event(BaseModel):
    """One behaviour event."""

    model_config = STRICT
    item_id: str = Field(min_length=1, max_length=512,
                         description="JSON string: the raw item id, as in the data")
    domain: str | None = Field(
        None,
        max_length=128,
        pattern=DOMAIN_PATTERN,
        description="JSON string (no ':'): the item's domain. May be omitted when the bundle "
        "has one domain, or when the item id exists in exactly one of its domains (it then "
        "resolves to that one); otherwise an event without it is a 422 `domain_required`. "
        "A domain the bundle does not have makes the item unknown",
    )
    timestamp: float | None = Field(
        None,
        allow_inf_nan=False,
        description="JSON number (finite; NaN, Infinity and 1e400 are 422 `finite_number`): "
        "unix seconds. When every event of the user has one, events are ordered by "
        "(timestamp, item_id) like the training data; otherwise the list order is used",
    )


class UserEvents(BaseModel):
    """One user's events (oldest first, the latest ``max_len`` read), or a stored ``user_id``."""

    model_config = ConfigDict(**STRICT, json_schema_extra={"anyOf": [
        {"required": ["events"], "properties": {"events": {"type": "array"}}},
        {"required": ["user_id"], "properties": {"user_id": {"type": "string"}}}]})
    user_id: str | None = Field(None, max_length=256, description="JSON string: echoed back; "
                                "without `events`, the stored user to read (/v1/users)")
    events: list[Event] | None = Field(
        None, description="JSON array of events, oldest first (may be empty: the answer then "
        "carries `fallback`); omit it to read `user_id`'s stored state instead")


class UsersRequest(BaseModel):
    """Base of every inference request: 1..``USERVEC_MAX_USERS_PER_REQUEST`` users (default 64)."""

    model_config = STRICT
    users: list[UserEvents] = Field(min_length=1, description="JSON array of users")


class EmbedRequest(UsersRequest):
    pass


class ProfileRequest(UsersRequest):
    attributes: list[str] | None = Field(
        None, min_length=1,
        description="JSON array of strings: the profile heads to run (see GET /v1/bundle); "
        "omitted = all of them",
    )
    decision: Decision = Field(
        "as_trained",
        description="JSON string, one of the listed values. as_trained: the head's argmax and "
        "softmax as trained with class weights (favours rare labels: the macro-F1 rule); "
        "prior_adjusted: logits shifted by the training label prior, so the label is the most "
        "probable one and the probabilities estimate the ordinary class probabilities (the "
        "accuracy rule; needs a bundle whose tasks list class_prior)",
    )


class RecommendUser(UserEvents):
    exclude: list[str] = Field(
        default_factory=list,
        description="JSON array of strings: raw item ids of the domain to drop for this user "
        "(at most USERVEC_MAX_EXCLUDE)",
    )


class RecommendRequest(UsersRequest):
    users: list[RecommendUser] = Field(  # type: ignore[assignment]
        min_length=1, description="JSON array of users")
    domain: str | None = Field(
        None, description="JSON string: the target domain; may be omitted when the bundle "
        "recommends in one domain only"
    )
    k: JsonInt | None = Field(
        None,
        description="JSON integer: items per user, 1..USERVEC_MAX_K (default 100); omitted = "
        "USERVEC_DEFAULT_K (default 10). Fewer come back when the domain has fewer items left",
        json_schema_extra={"minimum": 1},
    )
    exclude_seen: bool = Field(
        True, description="JSON boolean: drop items that appear anywhere in the user's events "
        "(all of them, not only the latest max_len)")
    exclude: list[str] = Field(
        default_factory=list,
        description="JSON array of strings: raw item ids of the domain to drop for every user "
        "(at most USERVEC_MAX_EXCLUDE)",
    )


#: what an answer falls back to when it reads no known event (null: it read at least one)
Fallback = Literal["popularity", "no_signal"]


class UserResult(BaseModel):
    user_id: str | None
    events_used: int = Field(
        description="events the model read: the latest max_len (for /recommend, the latest "
        "max_len of the known events in the head's source domains)")
    known_events: int = Field(
        description="how many of those events the model knows: 0 means the answer says "
        "nothing about this user (see fallback)")
    unknown_items: list[str] = Field(
        description="item ids among the events read (for /recommend, among the events of the "
        "head's source domains) that the model never saw")
    cached: bool = Field(description="the encoding came from the cache")
    fallback: Fallback | None = Field(
        description="null when the answer read at least one known event. Otherwise "
        "'no_signal' (/embed, /predict-profile: the vector or profile of a user the model "
        "knows nothing about) or 'popularity' (/recommend: the domain's most popular items)")


class EmbedResult(UserResult):
    vector: list[float]
    dim: int


class EmbedResponse(BaseModel):
    bundle_version: str
    results: list[EmbedResult]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "bundle_version": "ml100k-2024-06-01-3f2a9c1b",
                    "results": [
                        {
                            "user_id": "u1",
                            "vector": [0.12, -0.4, 0.03],
                            "dim": 3,
                            "events_used": 3,
                            "known_events": 2,
                            "unknown_items": ["914"],
                            "cached": False,
                            "fallback": None,
                        }
                    ],
                }
            ]
        }
    )


class AttributePrediction(BaseModel):
    label: str
    probability: float = Field(description="probability of the predicted label")
    probabilities: dict[str, float] = Field(description="every label, in the head's label order")


class ProfileResult(UserResult):
    attributes: dict[str, AttributePrediction]


#: what a head serves: the network on the user vector, a linear model on the item bag of every
#: event sent, or their sum (chosen per task on validation users at training time)
ServedKind = Literal["deep", "wide", "wide+deep"]


class ProfileResponse(BaseModel):
    bundle_version: str
    decision: Decision = Field(description="the decision rule the labels were read with")
    served_kinds: dict[str, ServedKind] = Field(
        default_factory=dict,
        description="per attribute asked: what its head serves (deep: the network on the user "
        "vector; wide: a linear model on the item bag of every event sent; wide+deep: both)")
    results: list[ProfileResult]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "bundle_version": "ml100k-2024-06-01-3f2a9c1b",
                    "decision": "as_trained",
                    "served_kinds": {"gender": "wide+deep"},
                    "results": [
                        {
                            "user_id": "u1",
                            "events_used": 3,
                            "known_events": 3,
                            "unknown_items": [],
                            "cached": True,
                            "fallback": None,
                            "attributes": {
                                "gender": {
                                    "label": "M",
                                    "probability": 0.71,
                                    "probabilities": {"F": 0.29, "M": 0.71},
                                }
                            },
                        }
                    ],
                }
            ]
        }
    )


class RecommendedItem(BaseModel):
    item_id: str
    score: float | None = Field(
        description="inner product of query and item vector; popularity fallback: null"
    )


class RecommendResult(UserResult):
    items: list[RecommendedItem]
    answered_by: str = Field(description="what ranked: `next_item` (history in the domain), the "
                             "cross-domain head's task name, or `popularity` (no signal)")


class RecommendResponse(BaseModel):
    bundle_version: str
    domain: str
    task: str
    served_kind: ServedKind = Field(
        "deep", description="what the head serves (deep: the network on the user vector; wide: "
        "ridge from the item bag of every event sent; wide+deep: their scores added)")
    results: list[RecommendResult]

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "bundle_version": "ciao-2024-06-01-77b1e0aa",
                    "domain": "books",
                    "task": "books",
                    "served_kind": "wide",
                    "results": [
                        {
                            "user_id": "u1",
                            "events_used": 3,
                            "known_events": 3,
                            "unknown_items": [],
                            "cached": False,
                            "fallback": None,
                            "items": [
                                {"item_id": "b17", "score": 4.2},
                                {"item_id": "b3", "score": 3.9},
                            ],
                        }
                    ],
                }
            ]
        }
    )


class ReloadRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True,
        json_schema_extra={"examples": [{"bundle_path": "/bundles/ml100k-v2"}]},
    )
    bundle_path: str | None = Field(
        None, description="JSON string: a bundle directory on the server; omitted = reload the "
        "current path from disk"
    )


class ReloadResponse(BaseModel):
    previous_version: str | None
    bundle_version: str
    bundle_path: str
    duration_ms: float

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "previous_version": "ml100k-v1",
                    "bundle_version": "ml100k-v2",
                    "bundle_path": "/bundles/ml100k-v2",
                    "duration_ms": 412.5,
                }
            ]
        }
    )


class TaskSummary(BaseModel):
    name: str
    kind: str
    output: str
    labels: list[str] | None = None
    class_prior: list[float] | None = Field(
        None, description="profile: training label frequencies (decision prior_adjusted)"
    )
    prior_power: float | None = Field(
        None, description="profile: class-weight power the head was trained with"
    )
    domain: str | None = None
    source_domains: list[str] | None = None
    num_items: int | None = None
    index_kind: str | None = None


class BundleSummary(BaseModel):
    bundle_version: str
    schema_version: int
    created_at: str
    code_version: str
    data_fingerprint: str
    seed: int
    max_len: int
    dim: int
    vocab_size: int
    domains: list[str]
    model_file: str
    tasks: list[TaskSummary]
    recommend_domains: list[str]
    loaded_at: str

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "bundle_version": "ml100k-v2",
                    "schema_version": 1,
                    "created_at": "2024-06-01T12:00:00Z",
                    "code_version": "0.1.0+g1a2b3c4",
                    "data_fingerprint": "9c1d…",
                    "seed": 0,
                    "max_len": 100,
                    "dim": 64,
                    "vocab_size": 1684,
                    "domains": ["movies"],
                    "model_file": "model.onnx",
                    "tasks": [
                        {
                            "name": "gender",
                            "kind": "profile",
                            "output": "profile.gender",
                            "labels": ["F", "M"],
                        }
                    ],
                    "recommend_domains": [],
                    "loaded_at": "2024-06-01T12:05:00Z",
                }
            ]
        }
    )


class HealthResponse(BaseModel):
    status: str
    bundle_version: str | None = Field(
        None, description="the bundle being served; null while none is loaded")

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "ready", "bundle_version": "ml100k-v2"}]}
    )


class ErrorInfo(BaseModel):
    code: str = Field(description="stable machine-readable code, see docs/service.md#errors")
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorInfo

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "k_out_of_range",
                        "message": "k must be between 1 and 100, got 500",
                        "details": {"k": 500, "min": 1, "max": 100},
                    }
                }
            ]
        }
    )
