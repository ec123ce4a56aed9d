"""Hand-written hostile requests and the check every answer must pass (torch-free).

Each case says which statuses are acceptable; on top of that no answer may be a 5xx, and every
error answer must have the service's one error shape. Shared by the robustness benchmark (sent to a
live server) and ``tests/service/test_hostile_inputs.py`` (sent to the in-process app).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

JSON = "application/json"
#: bodies above the service's default 1 MiB limit
TEN_MB = 10 * 2**20
#: the admin key the server under test is started with (admin endpoints exist only with one)
ADMIN_KEY = "hostile-admin-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
#: what the server under test must be configured with for the catalogue's expectations
SERVER_SETTINGS: dict[str, Any] = {
    "admin_api_keys": ADMIN_KEY, "body_timeout_s": 1.0, "header_timeout_s": 1.0,
}


@dataclass(frozen=True)
class HostileCase:
    name: str
    path: str
    body: bytes
    allowed: frozenset[int]
    method: str = "POST"
    content_type: str | None = JSON
    #: send the body with chunked transfer encoding (no Content-Length)
    chunked: bool = False
    #: error codes the answer may carry (empty: any documented code)
    codes: frozenset[str] = field(default_factory=frozenset)
    headers: tuple[tuple[str, str], ...] = ()
    #: "body": send the headers and ``body`` (a part of it), then nothing; "head": send ``body``
    #: as the beginning of a request head, then nothing (only over a real socket)
    stall: str | None = None


def _events(item_ids: list[Any], **extra: Any) -> list[dict[str, Any]]:
    return [{"item_id": item, "domain": "books", **extra} for item in item_ids]


def _embed(events: list[dict[str, Any]] | str) -> bytes:
    text = events if isinstance(events, str) else json.dumps(events)
    return ('{"users": [{"events": ' + text + "}]}").encode()


def _case(name: str, path: str, body: bytes | str, *allowed: int, codes: tuple[str, ...] = (),
          headers: dict[str, str] | None = None, **kw: Any) -> HostileCase:
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return HostileCase(name, path, raw, frozenset(allowed), codes=frozenset(codes),
                       headers=tuple((headers or {}).items()), **kw)


def _known_event(item: str) -> str:
    """One event (JSON text) of an item the bundle knows."""
    return f'{{"item_id": "{item}", "domain": "books"}}'


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data, mtime=0)


def _number_cases(item: str) -> list[HostileCase]:
    """Numbers the JSON grammar does not have, or that overflow; 422 or 400, never a 5xx."""
    ok = _known_event(item)
    return [
        _case("nan_timestamp", "/embed", _embed(f'[{{"item_id": "{item}", "timestamp": NaN}}]'),
              422, codes=("finite_number",)),
        _case("infinity_timestamp", "/embed",
              _embed(f'[{{"item_id": "{item}", "timestamp": Infinity}}, {ok}]'), 422,
              codes=("finite_number",)),
        _case("minus_infinity_timestamp", "/embed",
              _embed(f'[{{"item_id": "{item}", "timestamp": -Infinity}}]'), 422,
              codes=("finite_number",)),
        _case("huge_float_timestamp", "/embed",
              _embed(f'[{{"item_id": "{item}", "timestamp": 1e400}}]'), 422,
              codes=("finite_number",)),
        _case("mixed_nan_timestamps", "/embed", _embed(
            f'[{{"item_id": "{item}", "timestamp": NaN}}, {{"item_id": "b2", "timestamp": 1}}]'),
            422, codes=("finite_number",)),
        _case("nan_k", "/recommend",
              f'{{"users": [{{"events": [{ok}]}}], "domain": "games", "k": NaN}}', 422,
              codes=("finite_number",)),
        _case("huge_int_k", "/recommend",
              f'{{"users": [{{"events": [{ok}]}}], "domain": "games", "k": {10**30}}}', 422),
        _case("float_k", "/recommend",
              f'{{"users": [{{"events": [{ok}]}}], "domain": "games", "k": 1e308}}', 422),
        _case("negative_k", "/recommend",
              f'{{"users": [{{"events": [{ok}]}}], "domain": "games", "k": -1}}', 422),
        _case("int_4301_digits_item", "/embed", _embed("[{\"item_id\": " + "9" * 4301 + "}]"),
              400, codes=("invalid_json",)),
        _case("huge_number_item_id", "/embed", _embed('[{"item_id": 1e400}]'), 422,
              codes=("finite_number",)),
        _case("nan_item_id", "/embed", _embed('[{"item_id": NaN}]'), 422,
              codes=("finite_number",)),
    ]


def _type_cases(item: str) -> list[HostileCase]:
    """A JSON type is never read as another; events without a domain in a two-domain bundle."""
    ok = _known_event(item)
    return [
        # coercions: a JSON type is never read as another
        _case("number_item_id", "/embed", _embed('[{"item_id": 7, "domain": "books"}]'), 422,
              codes=("validation_error",)),
        _case("number_domain", "/embed", _embed(f'[{{"item_id": "{item}", "domain": 0}}]'), 422,
              codes=("validation_error",)),
        _case("bool_k", "/recommend",
              f'{{"users": [{{"events": [{ok}]}}], "domain": "games", "k": true}}', 422,
              codes=("validation_error",)),
        _case("string_k", "/recommend",
              f'{{"users": [{{"events": [{ok}]}}], "domain": "games", "k": "5"}}', 422,
              codes=("validation_error",)),
        _case("string_exclude_seen", "/recommend",
              f'{{"users": [{{"events": [{ok}]}}], "domain": "games", "exclude_seen": "no"}}',
              422, codes=("validation_error",)),
        _case("number_user_id", "/embed", f'{{"users": [{{"user_id": 5, "events": [{ok}]}}]}}',
              422, codes=("validation_error",)),
        _case("user_without_events", "/embed", '{"users": [{"events": null}]}', 422,
              codes=("validation_error",)),
        # events without a domain in a two-domain bundle
        _case("no_domain_unknown_item", "/recommend",
              '{"users": [{"events": [{"item_id": "nope"}]}], "domain": "games"}', 422,
              codes=("domain_required",)),
        _case("no_domain_known_item", "/recommend",
              f'{{"users": [{{"events": [{{"item_id": "{item}"}}]}}], "domain": "games"}}', 200),
    ]


def _size_cases() -> list[HostileCase]:
    """Bodies, event and user lists over their limits, and nesting deep enough to crash a parser."""
    nested = "[" * 100_000 + "]" * 100_000
    return [
        _case("body_10mb", "/embed", _embed(json.dumps("x" * TEN_MB)), 413),
        _case("body_10mb_chunked", "/embed", _embed(json.dumps("x" * TEN_MB)), 413,
              chunked=True),
        _case("events_over_limit", "/embed", _embed(_events(["b0"] * 1001)), 422),
        _case("users_over_limit", "/embed",
              json.dumps({"users": [{"events": _events(["b0"])}] * 65}), 422),
        # nesting
        _case("nested_100k_arrays", "/embed", nested, 400, codes=("invalid_json",)),
        _case("nested_in_events", "/embed", _embed(nested), 400, codes=("invalid_json",)),
        _case("nested_objects", "/embed", '{"a":' * 50_000 + "1" + "}" * 50_000, 400,
              codes=("invalid_json",)),
    ]


def _string_cases(item: str) -> list[HostileCase]:
    """Unicode, surrogates, separators and over-long ids; duplicates of every kind."""
    ok = _known_event(item)
    return [
        _case("unicode_item_ids", "/embed",
              _embed(_events(["книга", "本", "🎮🎲", "e\u0301", "\u202eRTL", "\u200b"])), 200),
        _case("lone_surrogate_item_id", "/embed", _embed('[{"item_id": "\\ud800x"}]'),
              200, 400, 422),
        _case("null_byte_item_id", "/embed", _embed('[{"item_id": "a\\u0000b"}]'), 200, 422),
        _case("empty_item_id", "/embed", _embed('[{"item_id": ""}]'), 422),
        _case("domain_with_colon", "/embed", _embed('[{"item_id": "1", "domain": "a::b"}]'),
              422),
        _case("item_id_with_separator", "/embed",
              _embed('[{"item_id": "x::y", "domain": "books"}]'), 200),
        _case("item_id_513_chars", "/embed", _embed(_events(["x" * 513])), 422),
        _case("unicode_domain", "/recommend", json.dumps(
            {"users": [{"events": _events([item])}], "domain": "игры"}), 422),
        _case("lone_surrogate_domain", "/recommend",
              f'{{"users": [{{"events": [{ok}]}}], "domain": "\\udc00"}}', 422),
        _case("lone_surrogate_user_id", "/embed",
              f'{{"users": [{{"user_id": "\\ud83d", "events": [{ok}]}}]}}', 200, 400, 422),
        _case("lone_surrogate_attribute", "/predict-profile",
              f'{{"users": [{{"events": [{ok}]}}], "attributes": ["\\udfff"]}}', 422),
        # duplicates
        _case("duplicate_events", "/embed", _embed(_events([item] * 1000)), 200),
        _case("duplicate_users", "/embed",
              json.dumps({"users": [{"events": _events([item, "b2"])}] * 64}), 200),
        _case("duplicate_timestamps", "/embed",
              _embed(_events([item, "b2", item], timestamp=5)), 200),
        _case("duplicate_keys", "/embed",
              f'{{"users": [], "users": [{{"events": [{ok}]}}]}}', 200),
        _case("duplicate_exclude", "/recommend", json.dumps(
            {"users": [{"events": _events([item]), "exclude": ["g1"] * 1000}],
             "domain": "games"}), 200),
    ]


def _shape_cases(item: str) -> list[HostileCase]:
    """Bodies of the wrong encoding, shape, type or media type."""
    ok = _known_event(item)
    return [
        _case("empty_body", "/embed", b"", 422, 400),
        _case("not_json", "/embed", b"{users: nope", 400, codes=("invalid_json",)),
        _case("truncated_json", "/embed", b'{"users": [', 400, codes=("invalid_json",)),
        _case("invalid_utf8", "/embed", b'{"users": [{"events": [{"item_id": "\xff\xfe"}]}]}',
              400, codes=("invalid_json",)),
        _case("invalid_utf8_reload", "/admin/reload", b'{"bundle_path": "\xff"}', 400,
              codes=("invalid_json",), headers=ADMIN),
        _case("gzip_bytes_as_json", "/embed", _gzip(_embed(_events([item]))), 400,
              codes=("invalid_json",)),
        _case("gzip_content_encoding", "/embed", _gzip(_embed(_events([item]))), 415,
              codes=("unsupported_media_type",), headers={"Content-Encoding": "gzip"}),
        _case("utf8_bom", "/embed", "\ufeff" + _embed(_events([item])).decode(), 200, 400),
        _case("json_null", "/embed", "null", 422),
        _case("json_array", "/embed", "[]", 422),
        _case("users_string", "/embed", '{"users": "everyone"}', 422),
        _case("events_object", "/embed", '{"users": [{"events": {}}]}', 422),
        _case("timestamp_string", "/embed", _embed('[{"item_id": "b0", "timestamp": "now"}]'),
              422),
        _case("timestamp_bool", "/embed", _embed('[{"item_id": "b0", "timestamp": true}]'),
              422, codes=("validation_error",)),
        _case("item_id_object", "/embed", _embed('[{"item_id": {"a": 1}}]'), 422),
        _case("extra_field", "/embed", _embed('[{"item_id": "b0", "rating": 5}]'), 422),
        _case("no_users", "/embed", '{"users": []}', 422),
        _case("text_plain", "/embed", _embed(_events([item])), 415, content_type="text/plain"),
        _case("form_encoded", "/embed", b"users=1", 415,
              content_type="application/x-www-form-urlencoded"),
        _case("no_content_type", "/embed", _embed(_events([item])), 200, 415,
              content_type=None),
        _case("profile_empty_attributes", "/predict-profile",
              f'{{"users": [{{"events": [{ok}]}}], "attributes": []}}', 422),
        _case("profile_unknown_attribute", "/predict-profile",
              f'{{"users": [{{"events": [{ok}]}}], "attributes": ["height"]}}', 422),
        _case("recommend_exclude_over_limit", "/recommend", json.dumps(
            {"users": [{"events": _events([item])}], "domain": "games",
             "exclude": [str(i) for i in range(1001)]}), 422),
    ]


def _route_cases() -> list[HostileCase]:
    """Methods and paths; the admin endpoint; slow clients (408 at the deadline)."""
    return [
        _case("get_on_post_endpoint", "/embed", b"", 405, method="GET", content_type=None),
        _case("head_ready", "/health/ready", b"", 200, method="HEAD", content_type=None),
        _case("head_live", "/health/live", b"", 200, method="HEAD", content_type=None),
        _case("unknown_path", "/nope", b"{}", 404),
        _case("path_traversal", "/../../etc/passwd", b"", 404, method="GET", content_type=None),
        # admin (the server has an admin key; without one the endpoint does not exist)
        _case("reload_missing_path", "/admin/reload", '{"bundle_path": "/nonexistent/bundle"}',
              409, headers=ADMIN),
        _case("reload_null_byte_path", "/admin/reload", '{"bundle_path": "/tmp/a\\u0000b"}',
              409, 422, headers=ADMIN),
        _case("reload_surrogate_path", "/admin/reload", '{"bundle_path": "/tmp/\\ud800"}',
              409, 422, headers=ADMIN),
        _case("reload_huge_path", "/admin/reload", json.dumps({"bundle_path": "a" * 100_000}),
              409, 422, headers=ADMIN),
        _case("reload_without_admin_key", "/admin/reload", b"", 401,
              codes=("missing_api_key",)),
        _case("reload_with_wrong_key", "/admin/reload", b"", 403, codes=("invalid_api_key",),
              headers={"Authorization": "Bearer guess"}),
        # slow clients: a body that stops half-way gets 408 at the body deadline
        _case("stalled_body", "/embed", b'{"users":', 408, codes=("request_timeout",),
              stall="body"),
        _case("stalled_head", "/embed", b"POST /embed HTTP/1.1\r\nHost: x\r\n", 408,
              codes=("request_timeout",), stall="head"),
    ]


#: public name for the catalogues of other endpoints (uservec.bench.hostile_users)
case = _case


def hostile_cases(item: str = "b0") -> list[HostileCase]:
    """The catalogue of the stateless endpoints; ``item`` is a raw id the bundle knows (domain
    books). :func:`uservec.bench.hostile_users.all_cases` adds the user-state endpoints."""
    return [*_number_cases(item), *_type_cases(item), *_size_cases(), *_string_cases(item),
            *_shape_cases(item), *_route_cases()]


def check_answer(case: HostileCase, status: int, body: bytes) -> str | None:
    """What is wrong with the answer to ``case`` (None: acceptable)."""
    if status >= 500:
        return f"{case.name}: server error {status}: {body[:300]!r}"
    if status not in case.allowed:
        return f"{case.name}: status {status} not in {sorted(case.allowed)}: {body[:300]!r}"
    if status >= 400:
        try:
            payload = json.loads(body)
            error = payload["error"]
            if set(payload) != {"error"} or set(error) != {"code", "message", "details"}:
                return f"{case.name}: error body has the wrong shape: {body[:300]!r}"
        except (ValueError, KeyError, TypeError):
            return f"{case.name}: error body is not the JSON error shape: {body[:300]!r}"
        if case.codes and error["code"] not in case.codes:
            return f"{case.name}: error code {error['code']!r} not in {sorted(case.codes)}"
    return None
