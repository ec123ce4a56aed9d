"""Request limits that come from settings (the schemas declare only shapes and types)."""

from __future__ import annotations

from collections.abc import Sequence

from uservec.service.errors import InvalidRequest
from uservec.service.schemas import UserEvents
from uservec.service.settings import Settings


def check_users(users: Sequence[UserEvents], settings: Settings) -> None:
    """At most ``max_users_per_request`` users, each with at most ``max_events_per_user`` events."""
    if len(users) > settings.max_users_per_request:
        raise InvalidRequest(
            f"at most {settings.max_users_per_request} users per request, got {len(users)}",
            code="too_many_users",
            details={"users": len(users), "max": settings.max_users_per_request},
        )
    for position, user in enumerate(users):
        if user.events is not None and len(user.events) > settings.max_events_per_user:
            raise InvalidRequest(
                f"user {position} has {len(user.events)} events; at most "
                f"{settings.max_events_per_user} are accepted (the model reads only the latest "
                "max_len, so send those)",
                code="too_many_events",
                details={
                    "user": position,
                    "events": len(user.events),
                    "max": settings.max_events_per_user,
                },
            )


def check_k(k: int, settings: Settings) -> None:
    if not 1 <= k <= settings.max_k:
        raise InvalidRequest(
            f"k must be between 1 and {settings.max_k}, got {k}",
            code="k_out_of_range",
            details={"k": k, "min": 1, "max": settings.max_k},
        )


def check_exclude(count: int, settings: Settings, user: int | None = None) -> None:
    """At most ``max_exclude`` ids in the request's ``exclude`` and in each user's (a limit per
    list, so that the OpenAPI schema can state it as ``maxItems``)."""
    if count > settings.max_exclude:
        where = "the request's 'exclude'" if user is None else f"user {user}'s 'exclude'"
        raise InvalidRequest(
            f"at most {settings.max_exclude} excluded ids in {where}, got {count}",
            code="too_many_excluded",
            details={"user": user, "excluded": count, "max": settings.max_exclude},
        )
