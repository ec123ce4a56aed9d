"""Probes and /metrics: open without keys, readiness follows the bundle."""

from __future__ import annotations

import pytest
from service_helpers import assert_error, user

pytestmark = pytest.mark.anyio


async def test_live_and_ready_answer_without_a_key(serve, make_settings, reference):
    async with serve(make_settings(api_keys=["k"])) as served:
        live = await served.client.get("/health/live")
        ready = await served.client.get("/health/ready")
        metrics = await served.client.get("/metrics")
    # regression: live said bundle_version null with a bundle loaded
    assert live.json() == {"status": "live", "bundle_version": reference.version}
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "bundle_version": reference.version}
    assert metrics.status_code == 200


async def test_without_a_bundle_the_service_is_live_but_not_ready(serve, make_settings):
    async with serve(make_settings(bundle_path=None)) as served:
        live = await served.client.get("/health/live")
        ready = await served.client.get("/health/ready")
        embed = await served.client.post("/embed", json={"users": [user("b0")]})
    assert live.json() == {"status": "live", "bundle_version": None}
    assert assert_error(ready, 503, "not_ready")["details"] == {"reason": "no_bundle"}
    assert_error(embed, 503, "not_ready")


async def test_metrics_expose_stages_batches_cache_and_the_bundle_version(
    serve, make_settings, reference
):
    async with serve(make_settings()) as served:
        await served.client.post("/recommend", json={"users": [user("b0")], "domain": "games"})
        text = (await served.client.get("/metrics")).text
    assert f'uservec_bundle_info{{bundle_version="{reference.version}"' in text
    for stage in ("queue", "cache", "encode", "search"):
        assert f'uservec_stage_duration_seconds_count{{stage="{stage}"}} 1.0' in text
    assert "uservec_batch_size_count 1.0" in text
    assert 'uservec_cache_lookups_total{backend="memory",result="miss"} 1.0' in text
    assert ('uservec_request_duration_seconds_count{endpoint="/recommend",method="POST",'
            'status="200"} 1.0') in text


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/metrics"])
async def test_probes_answer_head_as_they_answer_get(serve, make_settings, path):
    """Regression: HEAD /health/ready was a 405 (load balancers probe with HEAD)."""
    async with serve(make_settings(api_keys=["k"])) as served:
        head = await served.client.head(path)
        get = await served.client.get(path)
    assert head.status_code == get.status_code == 200
    assert head.headers["content-type"] == get.headers["content-type"]


async def test_head_on_readiness_tells_not_ready_too(serve, make_settings):
    async with serve(make_settings(bundle_path=None)) as served:
        assert (await served.client.head("/health/ready")).status_code == 503
