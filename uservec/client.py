"""A small typed client for the uservec service: ``pip install uservec`` is enough (no torch).

    from uservec.client import Client, Event, User

    with Client("http://127.0.0.1:8000") as client:
        user = User([Event("b17", "books"), Event("b3", "books")], user_id="u1")
        vector = client.embed([user])[0].vector
        top = client.recommend([user], domain="games", k=5)[0].items

:class:`AsyncClient` has the same methods as coroutines. Both run on httpx. A refused request
raises :class:`ServiceError` carrying the service's stable error ``code`` (``domain_required``,
``too_many_users``, ...), its HTTP status, message and details; connection failures raise httpx's
own ``httpx.TransportError``. Results are frozen dataclasses mirroring the service's response
models (tests/test_client.py checks that their fields match).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

import httpx

from uservec.contract.decision import Decision

__all__ = [
    "AsyncClient",
    "AttributePrediction",
    "BundleSummary",
    "Client",
    "EmbedResult",
    "Event",
    "ProfileResult",
    "RecommendResult",
    "RecommendedItem",
    "ServiceError",
    "User",
]

Fallback = Literal["popularity", "no_signal"]
DEFAULT_TIMEOUT_S = 30.0


class ServiceError(Exception):
    """The service refused a request: ``code`` is its stable error code (see the API docs)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


# --- requests
@dataclass(frozen=True)
class Event:
    """One behaviour event: a raw item id, its domain (optional where the service can tell) and
    a finite unix timestamp (optional)."""

    item_id: str
    domain: str | None = None
    timestamp: float | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"item_id": self.item_id}
        if self.domain is not None:
            body["domain"] = self.domain
        if self.timestamp is not None:
            body["timestamp"] = self.timestamp
        return body


@dataclass(frozen=True)
class User:
    """A user's events, oldest first; ``exclude`` is used by :meth:`Client.recommend` only."""

    events: Sequence[Event]
    user_id: str | None = None
    exclude: Sequence[str] = ()

    def to_json(self, with_exclude: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"events": [event.to_json() for event in self.events]}
        if self.user_id is not None:
            body["user_id"] = self.user_id
        if with_exclude and self.exclude:
            body["exclude"] = list(self.exclude)
        return body


UserLike = User | Mapping[str, Any]


def _user_json(user: UserLike, with_exclude: bool = False) -> dict[str, Any]:
    """A :class:`User` as request JSON; a mapping is sent as given (the service validates it)."""
    return user.to_json(with_exclude) if isinstance(user, User) else dict(user)


# --- results
@dataclass(frozen=True)
class _Result:
    user_id: str | None
    events_used: int
    known_events: int
    unknown_items: list[str]
    cached: bool
    fallback: Fallback | None


def _common(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"user_id": row["user_id"], "events_used": row["events_used"],
            "known_events": row["known_events"], "unknown_items": list(row["unknown_items"]),
            "cached": row["cached"], "fallback": row["fallback"]}


@dataclass(frozen=True)
class EmbedResult(_Result):
    vector: list[float]
    dim: int


@dataclass(frozen=True)
class AttributePrediction:
    label: str
    probability: float
    probabilities: dict[str, float]


@dataclass(frozen=True)
class ProfileResult(_Result):
    attributes: dict[str, AttributePrediction]


@dataclass(frozen=True)
class RecommendedItem:
    item_id: str
    score: float | None


@dataclass(frozen=True)
class RecommendResult(_Result):
    items: list[RecommendedItem]
    #: what ranked: "next_item", the cross-domain task's name, or "popularity"
    answered_by: str = ""


@dataclass(frozen=True)
class TaskSummary:
    name: str
    kind: str
    output: str
    labels: list[str] | None = None
    class_prior: list[float] | None = None
    prior_power: float | None = None
    domain: str | None = None
    source_domains: list[str] | None = None
    num_items: int | None = None
    index_kind: str | None = None


@dataclass(frozen=True)
class BundleSummary:
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
    recommend_domains: list[str]
    loaded_at: str
    tasks: list[TaskSummary] = field(default_factory=list)


def _embed_results(body: Mapping[str, Any]) -> list[EmbedResult]:
    return [EmbedResult(vector=list(row["vector"]), dim=row["dim"], **_common(row))
            for row in body["results"]]


def _profile_results(body: Mapping[str, Any]) -> list[ProfileResult]:
    return [ProfileResult(
        attributes={name: AttributePrediction(**value)
                    for name, value in row["attributes"].items()},
        **_common(row)) for row in body["results"]]


def _recommend_results(body: Mapping[str, Any]) -> list[RecommendResult]:
    return [RecommendResult(items=[RecommendedItem(**item) for item in row["items"]],
                            answered_by=row.get("answered_by", ""), **_common(row))
            for row in body["results"]]


def _bundle_summary(body: Mapping[str, Any]) -> BundleSummary:
    fields = {key: value for key, value in body.items() if key != "tasks"}
    return BundleSummary(tasks=[TaskSummary(**task) for task in body["tasks"]], **fields)


def _checked(response: httpx.Response) -> Any:
    """The JSON body of a 2xx response; :class:`ServiceError` for anything else."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success and body is not None:
        return body
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and "code" in error:
        raise ServiceError(response.status_code, str(error["code"]), str(error.get("message")),
                           error.get("details"))
    # not the service's error shape (a proxy in between, a wrong URL)
    raise ServiceError(response.status_code, f"http_{response.status_code}",
                       response.text[:500] or response.reason_phrase)


def _profile_body(users: Sequence[UserLike], attributes: Sequence[str] | None,
                  decision: Decision) -> dict[str, Any]:
    body: dict[str, Any] = {"users": [_user_json(u) for u in users], "decision": decision}
    if attributes is not None:
        body["attributes"] = list(attributes)
    return body


def _recommend_body(users: Sequence[UserLike], domain: str | None, k: int | None,
                    exclude_seen: bool, exclude: Sequence[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"users": [_user_json(u, with_exclude=True) for u in users],
                            "exclude_seen": exclude_seen}
    if domain is not None:
        body["domain"] = domain
    if k is not None:
        body["k"] = k
    if exclude:
        body["exclude"] = list(exclude)
    return body


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class Client:
    """Blocking client; use as a context manager or call :meth:`close`."""

    def __init__(self, base_url: str, api_key: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(base_url=base_url, headers=_headers(api_key),
                                  timeout=timeout_s, transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        return _checked(self._http.post(path, json=body))

    def embed(self, users: Sequence[UserLike]) -> list[EmbedResult]:
        """One universal user vector per user (``POST /embed``)."""
        return _embed_results(self._post("/embed", {"users": [_user_json(u) for u in users]}))

    def predict_profile(self, users: Sequence[UserLike], attributes: Sequence[str] | None = None,
                        decision: Decision = "as_trained") -> list[ProfileResult]:
        """Predicted attributes per user (``POST /predict-profile``)."""
        return _profile_results(self._post("/predict-profile",
                                           _profile_body(users, attributes, decision)))

    def recommend(self, users: Sequence[UserLike], domain: str | None = None,
                  k: int | None = None, exclude_seen: bool = True,
                  exclude: Sequence[str] = ()) -> list[RecommendResult]:
        """Top-k items of ``domain`` per user (``POST /recommend``)."""
        return _recommend_results(self._post(
            "/recommend", _recommend_body(users, domain, k, exclude_seen, exclude)))

    def bundle(self) -> BundleSummary:
        """What the service is serving (``GET /v1/bundle``)."""
        return _bundle_summary(_checked(self._http.get("/v1/bundle")))

    def ready(self) -> bool:
        """Whether the service is ready (``GET /health/ready`` is 200)."""
        return self._http.get("/health/ready").status_code == 200


class AsyncClient:
    """The same as :class:`Client`, with coroutine methods; ``async with`` or ``await close()``."""

    def __init__(self, base_url: str, api_key: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, headers=_headers(api_key),
                                       timeout=timeout_s, transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        return _checked(await self._http.post(path, json=body))

    async def embed(self, users: Sequence[UserLike]) -> list[EmbedResult]:
        return _embed_results(await self._post("/embed",
                                               {"users": [_user_json(u) for u in users]}))

    async def predict_profile(self, users: Sequence[UserLike],
                              attributes: Sequence[str] | None = None,
                              decision: Decision = "as_trained") -> list[ProfileResult]:
        return _profile_results(await self._post("/predict-profile",
                                                 _profile_body(users, attributes, decision)))

    async def recommend(self, users: Sequence[UserLike], domain: str | None = None,
                        k: int | None = None, exclude_seen: bool = True,
                        exclude: Sequence[str] = ()) -> list[RecommendResult]:
        return _recommend_results(await self._post(
            "/recommend", _recommend_body(users, domain, k, exclude_seen, exclude)))

    async def bundle(self) -> BundleSummary:
        return _bundle_summary(_checked(await self._http.get("/v1/bundle")))

    async def ready(self) -> bool:
        return (await self._http.get("/health/ready")).status_code == 200
