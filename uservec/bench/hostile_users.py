"""Hostile requests for the user-state endpoints (``/v1/users/{user_id}``), and a race.

Joined to the catalogue of :mod:`uservec.bench.hostile`; the cases run in order against one
server, and ``users_older_event`` relies on ``users_first_append`` just before it.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from uservec.bench.hostile import TEN_MB, HostileCase, case, hostile_cases

USER = "hostile-user"


def _append(events: list[dict[str, Any]] | str, **extra: Any) -> str:
    text = events if isinstance(events, str) else json.dumps(events)
    fields = "".join(f', "{k}": {json.dumps(v)}' for k, v in extra.items())
    return f'{{"events": {text}{fields}}}'


def user_cases(item: str) -> list[HostileCase]:
    """Unknown users, invalid ids, huge or empty appends, stale events, wrong types."""
    event = {"item_id": item, "domain": "books"}
    path = f"/v1/users/{USER}/events"
    return [
        case("unknown_stored_user", "/embed", '{"users": [{"user_id": "nobody"}]}', 404,
             codes=("user_not_found",)),
        case("users_get_unknown", "/v1/users/nobody", b"", 404, method="GET",
             content_type=None, codes=("user_not_found",)),
        case("users_delete_unknown", "/v1/users/nobody", b"", 404, method="DELETE",
             content_type=None, codes=("user_not_found",)),
        case("users_id_with_space", "/v1/users/a%20b/events", _append([event]), 422,
             codes=("validation_error",)),
        case("users_id_129_chars", f"/v1/users/{'a' * 129}/events", _append([event]), 422,
             codes=("validation_error",)),
        case("users_id_unicode", "/v1/users/%D0%BA%F0%9F%8E%AE/events", _append([event]), 422,
             codes=("validation_error",)),
        case("users_id_slash", "/v1/users/a%2Fb/events", _append([event]), 404, 422),
        case("users_append_empty", path, _append([]), 422, codes=("validation_error",)),
        case("users_append_over_limit", path, _append([event] * 1001), 422,
             codes=("too_many_events",)),
        case("users_append_10mb", path, _append(json.dumps("x" * TEN_MB)), 413),
        case("users_append_nan_timestamp", path,
             _append(f'[{{"item_id": "{item}", "timestamp": NaN}}]'), 422,
             codes=("finite_number",)),
        case("users_append_string_predict", path, _append([event], predict="yes"), 422,
             codes=("validation_error",)),
        case("users_append_unknown_items", path,
             _append([{"item_id": "никогда", "domain": "books"}, {"item_id": "\u202e"}]), 200,
             422),
        case("users_first_append", "/v1/users/hostile-order/events",
             _append([{**event, "timestamp": 1e12}]), 200, 409),
        case("users_older_event", "/v1/users/hostile-order/events",
             _append([{**event, "timestamp": 1.0}]), 409, codes=("out_of_order",)),
        case("users_delete_then_get", "/v1/users/hostile-order", b"", 200, method="DELETE",
             content_type=None),
        case("users_get_deleted", "/v1/users/hostile-order", b"", 404, method="GET",
             content_type=None, codes=("user_not_found",)),
    ]


def all_cases(item: str = "b0") -> list[HostileCase]:
    """The whole catalogue: the stateless endpoints' cases, then the user-state ones."""
    return [*hostile_cases(item), *user_cases(item)]


def concurrent_appends(post: Any, get: Any, appends: int = 32) -> dict[str, Any]:
    """``appends`` one-event appends to one user at once; the stored count must equal them.

    ``post(path, body) -> status`` and ``get(path) -> (status, json)`` talk to the server.
    """
    path = "/v1/users/hostile-race/events"
    body = json.dumps({"events": [{"item_id": "b0", "domain": "books"}]}).encode()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: post(path, body), range(appends)))
    status, stored = get("/v1/users/hostile-race")
    total = stored.get("events_total") if status == 200 else None
    return {"appends": appends, "statuses": sorted(set(statuses)), "events_total": total,
            "lost": None if total is None else appends - int(total),
            "passed": set(statuses) == {200} and total == appends}
