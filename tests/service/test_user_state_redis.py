"""User state in a real Redis: appends from two replicas lose nothing; delete leaves no trace."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest
import redis
from service_helpers import assert_error, event

pytestmark = pytest.mark.anyio


def _settings(make_settings, url: str, prefix: str):
    return make_settings(redis_url=url, cache_key_prefix=prefix, user_state_ttl_s=60)


async def test_appends_from_two_replicas_lose_no_event(serve, make_settings, shared_redis_url):
    prefix = f"t-{uuid.uuid4().hex}"
    settings = _settings(make_settings, shared_redis_url, prefix)
    async with serve(settings) as one, serve(settings) as two:
        answers = await asyncio.gather(*(
            replica.client.post("/v1/users/shared/events",
                                json={"events": [event("b2"), event("g3")]})
            for _ in range(8) for replica in (one, two)
        ))
        final = (await one.client.get("/v1/users/shared")).json()
        await one.client.delete("/v1/users/shared")
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert final["events_total"] == 2 * 8 * 2


async def test_delete_leaves_no_key_or_value_derived_from_the_user(
    serve, make_settings, shared_redis_url
):
    prefix = f"t-{uuid.uuid4().hex}"
    user_id = f"erase-{uuid.uuid4().hex}"
    marker = f"item-{uuid.uuid4().hex}"  # an unknown item: stored with the user's events
    client = redis.Redis.from_url(shared_redis_url)
    async with serve(_settings(make_settings, shared_redis_url, prefix)) as served:
        appended = await served.client.post(
            f"/v1/users/{user_id}/events",
            json={"events": [event("b2"), event(marker), event("g5")], "predict": True})
        assert appended.status_code == 200, appended.text
        key = f"{prefix}:user:{user_id}"
        assert 0 < client.ttl(key) <= 60
        assert marker.encode() in client.get(key)
        await served.client.get(f"/v1/users/{user_id}")
        deleted = await served.client.delete(f"/v1/users/{user_id}")
        assert deleted.status_code == 200
        assert_error(await served.client.get(f"/v1/users/{user_id}"), 404, "user_not_found")
    vector = np.asarray(appended.json()["vector"], dtype=np.float32).tobytes()
    for found in client.scan_iter(count=1000):
        assert user_id.encode() not in found and not found.startswith(prefix.encode())
        if client.type(found) == b"string":
            value = client.get(found) or b""
            assert marker.encode() not in value and vector[:16] not in value, found


async def test_a_redis_outage_is_503_state_unavailable(serve, make_settings, own_redis):
    async with serve(_settings(make_settings, own_redis.url, "outage")) as served:
        ok = await served.client.post("/v1/users/u/events", json={"events": [event("b2")]})
        own_redis.kill()
        down = await served.client.post("/v1/users/u/events", json={"events": [event("b4")]})
        read = await served.client.get("/v1/users/u")
    assert ok.status_code == 200
    assert_error(down, 503, "state_unavailable")
    assert_error(read, 503, "state_unavailable")
