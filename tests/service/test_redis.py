"""The Redis encoding cache against real servers: shared between apps, and surviving an outage."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import pytest
from service_helpers import user

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

BODY = {"users": [user("b0", "g1", "b2")]}


async def test_apps_sharing_a_redis_share_encodings(serve, make_settings, shared_redis_url):
    prefix = f"uservec-test-{uuid.uuid4().hex}"
    settings = make_settings(redis_url=shared_redis_url, cache_key_prefix=prefix, redis_ttl_s=60)
    async with serve(settings) as first, serve(settings) as second:
        try:
            computed = (await first.client.post("/embed", json=BODY)).json()["results"][0]
            reused = (await second.client.post("/embed", json=BODY)).json()["results"][0]
            assert second.metric("uservec_batch_size_count") == 0  # second app never ran it
            assert second.metric("uservec_cache_lookups_total", backend="redis",
                                 result="hit") == 1
            keys = await first.runtime.cache.client.keys(f"{prefix}:*")
            assert len(keys) == 1
            assert 0 < await first.runtime.cache.client.ttl(keys[0]) <= 60
        finally:
            for key in await first.runtime.cache.client.keys(f"{prefix}:*"):
                await first.runtime.cache.client.delete(key)
    assert (computed["cached"], reused["cached"]) == (False, True)
    assert computed["vector"] == reused["vector"]


async def test_a_redis_outage_fails_no_request_and_the_cache_comes_back(
    serve, make_settings, own_redis
):
    settings = make_settings(redis_url=own_redis.url, redis_retry_interval_s=0.0,
                             redis_timeout_s=0.2)
    async with serve(settings) as served:
        first, second = [(await served.client.post("/embed", json=BODY)).json()
                         for _ in range(2)]
        assert (first["results"][0]["cached"], second["results"][0]["cached"]) == (False, True)

        own_redis.kill()
        during = [await served.client.post("/embed", json=BODY) for _ in range(3)]
        assert [r.status_code for r in during] == [200, 200, 200]
        assert not any(r.json()["results"][0]["cached"] for r in during)
        assert served.metric("uservec_cache_errors_total", operation="get") >= 3
        assert served.metric("uservec_cache_errors_total", operation="set") >= 1

        own_redis.start()  # same port: the pool reconnects by itself
        for _ in range(50):
            response = await served.client.post("/embed", json=BODY)
            assert response.status_code == 200
            if response.json()["results"][0]["cached"]:
                break
            await asyncio.sleep(0.02)
        assert response.json()["results"][0]["cached"], "the cache never came back"


def test_the_skip_message_names_a_ci_script_that_exists():
    """Regression: the skip message pointed at .ci/test.sh, which does not exist."""
    repo = Path(__file__).resolve().parents[2]
    conftest = (repo / "tests/service/conftest.py").read_text()
    scripts = re.findall(r"\.ci/[\w.-]+", conftest)
    assert scripts and all((repo / script).is_file() for script in scripts), scripts
