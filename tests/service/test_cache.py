"""Cache keys, the (no-pickle) value encoding, the LRU and the Redis backend's failure handling."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from uservec.service.cache import LRUCache, RedisCache, cache_key, deserialize, serialize
from uservec.service.metrics import Metrics

pytestmark = pytest.mark.anyio

id_lists = st.lists(st.integers(0, 2**40), max_size=20)


@given(a=id_lists, b=id_lists)
def test_cache_keys_are_equal_exactly_when_the_id_sequences_are(a, b):
    key_a = cache_key("p", "v1:abc", np.array(a, dtype=np.int64))
    key_b = cache_key("p", "v1:abc", np.array(b, dtype=np.int64))
    assert (key_a == key_b) == (a == b)
    assert key_a.startswith("p:v1:abc:")


@given(ids=id_lists)
def test_cache_keys_of_different_bundles_never_collide(ids):
    array = np.array(ids, dtype=np.int64)
    assert cache_key("p", "v1:abc", array) != cache_key("p", "v2:abc", array)


arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.int64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=5),
)


@settings(max_examples=50)
@given(st.dictionaries(st.text(min_size=1, max_size=12), arrays, max_size=4))
def test_serialize_round_trips_every_output(outputs):
    restored = deserialize(serialize(outputs))
    assert list(restored) == list(outputs)
    for name, array in outputs.items():
        assert restored[name].dtype == array.dtype
        np.testing.assert_array_equal(restored[name], array)


def test_deserialize_refuses_a_truncated_or_padded_entry():
    blob = serialize({"user_vector": np.arange(4, dtype=np.float32)})
    with pytest.raises(ValueError):
        deserialize(blob[:-3])
    with pytest.raises(ValueError, match="trailing"):
        deserialize(blob + b"!")


async def test_lru_evicts_the_least_recently_used_entry():
    cache = LRUCache(max_entries=2)
    one = {"v": np.ones(2)}
    await cache.set_many({"a": one, "b": one})
    await cache.get_many(["a"])  # "a" is now more recent than "b"
    await cache.set_many({"c": one})
    assert [v is not None for v in await cache.get_many(["a", "b", "c"])] == [True, False, True]
    assert len(cache) == 2


async def test_an_unreachable_redis_is_a_fast_miss_with_an_error_count():
    from service_helpers import free_port  # a port nobody listens on

    metrics = Metrics()
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", metrics, ttl_s=60, timeout_s=0.1,
                       max_connections=2, retry_interval_s=0.0)
    start = time.perf_counter()
    assert await cache.get_many(["a", "b"]) == [None, None]
    await cache.set_many({"a": {"v": np.ones(2)}})
    assert time.perf_counter() - start < 1.0
    sample = metrics.registry.get_sample_value
    assert sample("uservec_cache_errors_total", {"operation": "get"}) == 1
    assert sample("uservec_cache_errors_total", {"operation": "set"}) == 1
    await cache.close()


@pytest.mark.redis
async def test_redis_round_trips_entries_with_a_ttl(shared_redis_url):
    metrics = Metrics()
    cache = RedisCache(shared_redis_url, metrics, ttl_s=30, timeout_s=0.5, max_connections=2,
                       retry_interval_s=0.0)
    key = f"uservec-test:{uuid.uuid4().hex}"
    value = {"user_vector": np.arange(3, dtype=np.float32), "profile.g": np.ones(2, np.float32)}
    try:
        await cache.set_many({key: value})
        (found,) = await cache.get_many([key])
        assert found is not None
        np.testing.assert_array_equal(found["user_vector"], value["user_vector"])
        assert 0 < await cache.client.ttl(key) <= 30
        await cache.client.set(key, b"garbage")  # an undecodable entry is a miss, not an error
        assert await cache.get_many([key]) == [None]
        assert metrics.registry.get_sample_value(
            "uservec_cache_errors_total", {"operation": "decode"}) == 1
    finally:
        await cache.client.delete(key)
        await cache.close()


@pytest.mark.redis
async def test_more_concurrent_requests_than_connections_are_all_served(shared_redis_url):
    """A full pool used to raise at once, which marked Redis as down: every request a miss."""
    import asyncio

    metrics = Metrics()
    cache = RedisCache(shared_redis_url, metrics, ttl_s=30, timeout_s=0.5, max_connections=2,
                       retry_interval_s=5.0)
    key = f"uservec-test:{uuid.uuid4().hex}"
    try:
        await cache.set_many({key: {"v": np.ones(2, np.float32)}})
        found = await asyncio.gather(*(cache.get_many([key]) for _ in range(20)))
        assert all(hit is not None for (hit,) in found)
        assert metrics.registry.get_sample_value(
            "uservec_cache_errors_total", {"operation": "get"}) is None
    finally:
        await cache.client.delete(key)
        await cache.close()


@pytest.mark.redis
async def test_close_releases_every_redis_connection(shared_redis_url):
    import redis

    name = f"uservec-close-{uuid.uuid4().hex[:12]}"
    cache = RedisCache(f"{shared_redis_url}?client_name={name}", Metrics(), ttl_s=30,
                       timeout_s=0.5, max_connections=4, retry_interval_s=0.0)
    admin = redis.Redis.from_url(shared_redis_url)

    def open_connections() -> int:
        return sum(client.get("name") == name for client in admin.client_list())

    try:
        await cache.get_many(["a", "b"])
        assert open_connections() == 1
        await cache.close()
        assert open_connections() == 0
    finally:
        admin.close()

