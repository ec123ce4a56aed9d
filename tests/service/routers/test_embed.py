"""POST /embed against direct onnxruntime outputs; truncation, unknown ids, cache hits."""

from __future__ import annotations

import numpy as np
import pytest
from service_bundles import MAX_LEN
from service_helpers import event, random_users, user

pytestmark = pytest.mark.anyio


async def test_vectors_match_onnxruntime_for_every_user(serve, make_settings, reference):
    users = random_users(5, seed=1, max_len=14)
    async with serve(make_settings()) as served:
        response = await served.client.post(
            "/embed", json={"users": [user(*u, user_id=f"u{i}") for i, u in enumerate(users)]}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["bundle_version"] == reference.version
    for position, (raws, result) in enumerate(zip(users, body["results"], strict=True)):
        expected = reference.outputs(raws)["user_vector"]
        assert result["user_id"] == f"u{position}"
        assert result["dim"] == expected.size == len(result["vector"])
        assert result["events_used"] == min(len(raws), MAX_LEN)
        np.testing.assert_allclose(result["vector"], expected, rtol=1e-5, atol=1e-5)


async def test_only_the_latest_max_len_events_count_and_unknown_ids_are_reported(
    serve, make_settings, reference
):
    recent = ["b2", "x-unknown", "g3", "b4", "b6", "g5", "b8", "g7"]
    assert len(recent) == MAX_LEN
    long_user = user("old-unknown", "b10", "g9", *recent)
    async with serve(make_settings()) as served:
        response = await served.client.post("/embed", json={"users": [long_user, user(*recent)]})
    long_result, recent_result = response.json()["results"]
    assert long_result["events_used"] == MAX_LEN
    assert long_result["unknown_items"] == ["x-unknown"]  # "old-unknown" fell out of the window
    assert long_result["vector"] == recent_result["vector"]
    np.testing.assert_allclose(
        long_result["vector"], reference.outputs(recent)["user_vector"], rtol=1e-5, atol=1e-5
    )


async def test_a_user_without_events_still_gets_a_vector(serve, make_settings, reference):
    async with serve(make_settings()) as served:
        response = await served.client.post("/embed", json={"users": [{"events": []}]})
    (result,) = response.json()["results"]
    assert result["events_used"] == 0 and result["unknown_items"] == []
    np.testing.assert_allclose(result["vector"], reference.outputs([])["user_vector"], atol=1e-5)


async def test_timestamps_order_the_events(serve, make_settings):
    timed = {"events": [event("b2", timestamp=30), event("g3", timestamp=10),
                        event("b4", timestamp=20)]}
    async with serve(make_settings()) as served:
        response = await served.client.post(
            "/embed", json={"users": [timed, user("g3", "b4", "b2")]}
        )
    first, second = response.json()["results"]
    assert first["vector"] == second["vector"]


async def test_a_repeated_sequence_is_served_from_the_cache(serve, make_settings):
    body = {"users": [user("b0", "g1", "b2")]}
    async with serve(make_settings()) as served:
        first = (await served.client.post("/embed", json=body)).json()["results"][0]
        runs = served.metric("uservec_batch_size_count")
        # the same sequence again (the next test: sequences that differ only where the model
        # cannot see share the entry too)
        second = (await served.client.post("/embed", json=body)).json()["results"][0]
        assert served.metric("uservec_batch_size_count") == runs  # no model run
        assert served.metric("uservec_cache_lookups_total", backend="memory", result="hit") == 1
        assert served.metric("uservec_cache_lookups_total", backend="memory", result="miss") == 1
    assert (first["cached"], second["cached"]) == (False, True)
    assert first["vector"] == second["vector"]


async def test_sequences_the_model_cannot_tell_apart_share_a_cache_entry(serve, make_settings):
    window = ["b0", "g1", "b2", "g3", "b4", "g5", "b6", "g7"]
    async with serve(make_settings()) as served:
        await served.client.post("/embed", json={"users": [user("b8", *window)]})
        response = await served.client.post("/embed", json={"users": [user("g9", *window)]})
    assert response.json()["results"][0]["cached"] is True
