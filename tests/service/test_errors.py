"""Every bad input gets the one error shape with its documented status, never a 500."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_helpers import assert_error, running, user

from uservec.service.app import create_app
from uservec.service.errors import ERROR_CODES, ServiceError

pytestmark = pytest.mark.anyio

ENDPOINTS = ("/embed", "/predict-profile", "/recommend")


@pytest.fixture(scope="module")
async def served(main_bundle):
    from uservec.service.settings import Settings

    async with running(Settings(bundle_path=main_bundle, reload_on_sighup=False,
                                ort_intra_op_threads=1)) as app:
        yield app


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_malformed_json_is_a_400(served, path):
    response = await served.client.post(
        path, content=b'{"users": [', headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"users": "u1"}, ["body", "users"]),
        ({"users": [{"events": [{"item_id": {"x": 1}}]}]}, ["body", "users", 0, "events", 0,
                                                           "item_id"]),
        ({"users": [{"events": [{"item_id": ""}]}]}, ["body", "users", 0, "events", 0,
                                                      "item_id"]),
        ({"users": [{"events": "b0"}]}, ["body", "users", 0, "events"]),
        ({"users": [{"events": [], "age": 3}]}, ["body", "users", 0, "age"]),
        ({"users": [], "k": 3}, ["body", "users"]),
        ({}, ["body", "users"]),
        ({"users": [user("b0")], "k": "ten"}, ["body", "k"]),
        ([1, 2], ["body"]),
    ],
)
async def test_wrong_shapes_and_types_are_a_422_that_points_at_the_field(served, body, where):
    response = await served.client.post("/recommend", json=body)
    error = assert_error(response, 422, "validation_error")
    assert where in [detail["loc"] for detail in error["details"]]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_not_sent_as_json_is_a_415(served, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = await served.client.post("/embed", content=json.dumps({"users": [user("b0")]}),
                                        headers=headers)
    assert_error(response, 415, "unsupported_media_type")


async def test_json_with_a_charset_or_a_json_suffix_is_accepted(served):
    for content_type in ("application/json; charset=utf-8", "application/vnd.api+json"):
        response = await served.client.post(
            "/embed", content=json.dumps({"users": [user("b0")]}),
            headers={"content-type": content_type})
        assert response.status_code == 200, (content_type, response.text)


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("item_id", 7, ["body", "users", 0, "events", 0, "item_id"]),
        ("domain", 0, ["body", "users", 0, "events", 0, "domain"]),
        ("timestamp", True, ["body", "users", 0, "events", 0, "timestamp"]),
        ("timestamp", "5", ["body", "users", 0, "events", 0, "timestamp"]),
        ("k", True, ["body", "k"]),
        ("k", "5", ["body", "k"]),
        ("k", 5.5, ["body", "k"]),
        ("exclude_seen", 1, ["body", "exclude_seen"]),
        ("exclude_seen", "true", ["body", "exclude_seen"]),
        ("user_id", 5, ["body", "users", 0, "user_id"]),
        ("exclude", [7], ["body", "exclude", 0]),
    ],
)
async def test_no_json_type_is_converted_into_another(served, field, value, where):
    """Regression: 7 was read as "7", 0 as "0", true as 1 and "5" as 5."""
    event: dict = {"item_id": "b0", "domain": "books"}
    body: dict = {"users": [{"events": [event]}], "domain": "games"}
    if field in event or field == "timestamp":
        event[field] = value
    elif field == "user_id":
        body["users"][0]["user_id"] = value
    else:
        body[field] = value
    error = assert_error(await served.client.post("/recommend", json=body), 422,
                         "validation_error")
    assert where in [detail["loc"] for detail in error["details"]]


async def test_a_user_without_events_is_a_422(served):
    """Regression: {"users": [{}]} was a 200 for a user with no events."""
    error = assert_error(await served.client.post("/embed", json={"users": [{}]}), 422,
                         "validation_error")
    assert error["details"][0]["loc"] == ["body", "users", 0, "events"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize("field", ["timestamp", "k"])
async def test_non_finite_numbers_are_a_finite_number_422(served, field, literal):
    """Regression: NaN, Infinity and 1e400 timestamps were accepted (and broke the ordering)."""
    timestamp = literal if field == "timestamp" else "1"
    k = literal if field == "k" else "3"
    events = f'[{{"item_id": "b0", "domain": "books", "timestamp": {timestamp}}}]'
    body = f'{{"users": [{{"events": {events}}}], "domain": "games", "k": {k}}}'
    response = await served.client.post("/recommend", content=body,
                                        headers={"content-type": "application/json"})
    error = assert_error(response, 422, "finite_number")
    assert [d["type"] for d in error["details"]] == ["finite_number"]


async def test_events_order_by_finite_timestamps_whatever_order_they_are_sent_in(served):
    events = [{"item_id": raw, "domain": "books", "timestamp": t}
              for raw, t in [("b0", 3), ("b2", 1.5), ("b4", 2)]]
    vectors = []
    for order in ([0, 1, 2], [2, 1, 0], [1, 0, 2]):
        body = {"users": [{"events": [events[i] for i in order]}]}
        vectors.append((await served.client.post("/embed", json=body)).json()[
            "results"][0]["vector"])
    assert vectors[0] == vectors[1] == vectors[2]


async def test_a_domain_with_the_key_separator_is_a_422(served):
    response = await served.client.post(
        "/embed", json={"users": [{"events": [{"item_id": "1", "domain": "a::b"}]}]}
    )
    error = assert_error(response, 422, "validation_error")
    # refused by the schema, so the error points at the field
    assert error["details"][0]["loc"] == ["body", "users", 0, "events", 0, "domain"]


async def test_unknown_routes_and_methods_use_the_error_shape(served):
    assert_error(await served.client.get("/nope"), 404, "not_found")
    assert_error(await served.client.get("/embed"), 405, "method_not_allowed")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["users", "events", "item_id", "k", "domain", "exclude", "attributes",
                         "user_id", "timestamp"]), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_values, path=st.sampled_from(ENDPOINTS))
async def test_arbitrary_json_never_causes_a_server_error(served, body, path):
    response = await served.client.post(path, content=json.dumps(body),
                                        headers={"content-type": "application/json"})
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]["code"] in ERROR_CODES


def test_every_error_code_has_a_status_and_unknown_codes_are_refused():
    assert all(400 <= status < 600 for status in ERROR_CODES.values())
    assert ServiceError("x", code="too_many_users").status_code == 422
    with pytest.raises(ValueError, match="undocumented error code"):
        ServiceError("x", code="made_up")


async def test_an_internal_failure_is_a_500_in_the_error_shape(make_settings, monkeypatch):
    app = create_app(make_settings(batching_enabled=False))
    async with app.router.lifespan_context(app):
        def broken(*args, **kwargs):
            raise RuntimeError("onnxruntime exploded")

        for graph in app.state.runtime.current.graphs.values():
            monkeypatch.setattr(graph.session, "run", broken)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            response = await client.post("/embed", json={"users": [user("b0")]},
                                         headers={"X-Request-ID": "req-500"})
    error = assert_error(response, 500, "internal_error")
    assert "exploded" not in error["message"]  # internals are logged, not returned
    assert response.headers["x-request-id"] == "req-500"  # the id to quote in a bug report


GZIPPED = gzip.compress(json.dumps({"users": [user("b0")]}).encode())


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"users": [', "Expecting value"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"users": [{"events": [{"item_id": "\xff\xfe"}]}]}', "not UTF-8"),
        (GZIPPED, "not UTF-8"),
        (b'{"users": [{"events": [{"item_id": ' + b"9" * 4301 + b"}]}]}", "digits"),
    ],
    ids=["truncated", "deep_nesting", "not_utf8", "gzip_bytes", "int_4301_digits"],
)
async def test_every_unparseable_body_gets_the_one_invalid_json_shape(served, body, reason):
    """Regression: truncated JSON got details, the others "There was an error parsing the body"
    with details null."""
    response = await served.client.post("/embed", content=body,
                                        headers={"content-type": "application/json"})
    error = assert_error(response, 400, "invalid_json")
    assert set(error["details"]) == {"reason", "position"}
    assert reason in error["details"]["reason"] and reason in error["message"]


async def test_a_compressed_body_is_a_415_that_names_the_encoding(served):
    response = await served.client.post("/embed", content=GZIPPED, headers={
        "content-type": "application/json", "content-encoding": "gzip"})
    assert assert_error(response, 415, "unsupported_media_type")["details"] == {
        "content_encoding": "gzip"}
