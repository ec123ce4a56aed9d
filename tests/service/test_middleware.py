"""Request middleware: body size (413), in-flight limit (429), Server-Timing, ids, access log."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from service_helpers import assert_error, hold_inference, user

from uservec.service.app import create_app
from uservec.service.middleware import JsonFormatter

pytestmark = pytest.mark.anyio


async def test_an_oversize_body_is_a_413_whether_declared_or_streamed(serve, make_settings):
    big = json.dumps({"users": [user(*["b0"] * 200)]}).encode()

    async def chunks():
        for start in range(0, len(big), 512):
            yield big[start : start + 512]

    async with serve(make_settings(max_body_bytes=2048)) as served:
        declared = await served.client.post("/embed", content=big,
                                            headers={"content-type": "application/json"})
        streamed = await served.client.post("/embed", content=chunks(),
                                            headers={"content-type": "application/json"})
        small = await served.client.post("/embed", json={"users": [user("b0")]})
        assert served.metric("uservec_rejected_requests_total", reason="body_size") == 2
    assert "content-length" not in streamed.request.headers
    assert assert_error(declared, 413, "payload_too_large")["details"] == {"max_body_bytes": 2048}
    assert_error(streamed, 413, "payload_too_large")
    assert small.status_code == 200


async def test_over_the_in_flight_limit_requests_get_429_and_readiness_says_saturated(
    serve, make_settings, monkeypatch
):
    settings = make_settings(max_concurrent_requests=1, retry_after_s=7,
                             saturation_window_s=0.5)
    async with serve(settings) as served:
        # a model run that waits for the test keeps the first request in flight
        release = hold_inference(served.app, monkeypatch)
        first = asyncio.ensure_future(
            served.client.post("/embed", json={"users": [user("b0")]}))
        await asyncio.sleep(0.05)
        second = await served.client.post("/embed", json={"users": [user("b2")]})
        ready = await served.client.get("/health/ready")
        live = await served.client.get("/health/live")
        release.set()
        assert (await first).status_code == 200
        after = await served.client.post("/embed", json={"users": [user("b2")]})
        assert served.metric("uservec_rejected_requests_total", reason="in_flight") == 1
        await asyncio.sleep(0.6)  # the window passes without another refusal
        ready_later = await served.client.get("/health/ready")
    assert_error(second, 429, "too_many_requests")
    assert second.headers["retry-after"] == "7"
    details = assert_error(ready, 503, "not_ready")["details"]
    assert details["reason"] == "saturated" and details["refused"] == 1
    assert details["max_concurrent_requests"] == 1
    assert live.status_code == 200
    assert after.status_code == 200
    assert ready_later.status_code == 200


async def test_readiness_ignores_saturation_when_its_window_is_zero(
    serve, make_settings, monkeypatch
):
    settings = make_settings(max_concurrent_requests=1, saturation_window_s=0)
    async with serve(settings) as served:
        release = hold_inference(served.app, monkeypatch)
        first = asyncio.ensure_future(
            served.client.post("/embed", json={"users": [user("b0")]}))
        await asyncio.sleep(0.05)
        refused = await served.client.post("/embed", json={"users": [user("b2")]})
        ready = await served.client.get("/health/ready")
        release.set()
        await first
    assert refused.status_code == 429 and ready.status_code == 200


async def stalled(first: bytes):
    yield first
    await asyncio.sleep(3600)  # never sends the rest
    yield b""


async def test_a_stalled_upload_gets_408_and_never_holds_an_in_flight_slot(serve, make_settings):
    """Regression: stalled uploads held every in-flight slot (429 for everyone else) for as long
    as the sockets stayed open."""
    settings = make_settings(max_concurrent_requests=1, body_timeout_s=0.4)
    async with serve(settings) as served:
        uploads = [asyncio.ensure_future(served.client.post(
            "/embed", content=stalled(b'{"users":'), headers={"content-type": "application/json"}))
            for _ in range(4)]
        await asyncio.sleep(0.1)
        during = [await served.client.post("/embed", json={"users": [user("b0")]})
                  for _ in range(3)]
        ready = await served.client.get("/health/ready")
        timed_out = await asyncio.gather(*uploads)
        assert served.metric("uservec_rejected_requests_total", reason="body_timeout") == 4
        assert served.metric("uservec_receiving_requests") == 0
        assert served.metric("uservec_in_flight_requests") == 0
    assert [r.status_code for r in during] == [200, 200, 200]
    assert ready.status_code == 200
    for response in timed_out:
        error = assert_error(response, 408, "request_timeout")
        assert error["details"] == {"body_timeout_s": 0.4, "received_bytes": 9}
        assert response.headers["connection"] == "close"


async def test_responses_carry_server_timing_and_a_request_id(serve, make_settings):
    async with serve(make_settings()) as served:
        response = await served.client.post(
            "/recommend", json={"users": [user("b0")], "domain": "games"},
            headers={"X-Request-ID": "req-42"},
        )
        generated = await served.client.get("/health/live")
        bad_id = await served.client.get("/health/live", headers={"X-Request-ID": "a b\tc"})
    timing = dict(part.split(";dur=") for part in response.headers["server-timing"].split(", "))
    assert set(timing) == {"cache", "queue", "encode", "search", "total"}
    assert float(timing["total"]) >= float(timing["encode"]) > 0
    assert response.headers["x-request-id"] == "req-42"
    assert len(generated.headers["x-request-id"]) == 32
    assert bad_id.headers["x-request-id"] != "a b\tc"


async def test_each_request_writes_one_structured_access_log_record(
    serve, make_settings, caplog
):
    caplog.set_level(logging.INFO, logger="uservec.access")
    async with serve(make_settings()) as served:
        await served.client.post("/embed", json={"users": [user("b0")]},
                                 headers={"X-Request-ID": "abc"})
    (record,) = [r for r in caplog.records if r.name == "uservec.access"]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "abc"
    assert (line["method"], line["path"], line["endpoint"], line["status"]) == (
        "POST", "/embed", "/embed", 200)
    assert line["duration_ms"] > 0 and "encode" in line["stages_ms"]
    assert line["logger"] == "uservec.access" and line["level"] == "info"


async def test_a_client_that_leaves_before_the_body_is_a_499_not_a_server_error(make_settings):
    app = create_app(make_settings())
    sent = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/embed", "raw_path": b"/embed", "query_string": b"",
             "root_path": "", "headers": [(b"content-type", b"application/json")],
             "client": ("127.0.0.1", 1234), "server": ("svc", 80)}
    async with app.router.lifespan_context(app):
        await app(scope, receive, send)
        count = app.state.runtime.metrics.registry.get_sample_value
        assert sent == []  # nobody to answer
        assert count("uservec_request_duration_seconds_count",
                     {"endpoint": "/embed", "method": "POST", "status": "499"}) == 1
        assert count("uservec_request_duration_seconds_count",
                     {"endpoint": "/embed", "method": "POST", "status": "500"}) is None

