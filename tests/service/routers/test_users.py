"""User state: appends give what encoding the whole history gives; read, delete, order, races."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from service_helpers import assert_error, event, random_users

from uservec.service.inference import softmax

pytestmark = pytest.mark.anyio


def _events(*raws: str, start: float | None = None) -> list[dict]:
    if start is None:
        return [event(raw) for raw in raws]
    return [event(raw, timestamp=start + i) for i, raw in enumerate(raws)]


async def test_appends_one_by_one_or_at_once_give_the_whole_history_vector(
    serve, make_settings, reference
):
    raws = random_users(1, seed=4, min_len=8, max_len=9)[0]  # max_len events
    async with serve(make_settings()) as served:
        for raw in raws:
            response = await served.client.post("/v1/users/one/events",
                                                 json={"events": _events(raw)})
            assert response.status_code == 200, response.text
        at_once = await served.client.post("/v1/users/all/events",
                                           json={"events": _events(*raws), "predict": True})
        stored = (await served.client.get("/v1/users/one")).json()
    expected = reference.outputs(raws)
    body = at_once.json()
    for result in (response.json(), body, stored):
        np.testing.assert_allclose(result["vector"], expected["user_vector"], atol=1e-4)
        assert result["events_total"] == len(raws) and result["bundle_version"] == reference.version
    assert body["accepted"] == len(raws)
    gender = body["attributes"]["gender"]["probabilities"]
    np.testing.assert_allclose(list(gender.values()), softmax(expected["profile.gender"]),
                               atol=1e-4)


async def test_unknown_users_are_404_and_delete_removes_the_state(serve, make_settings):
    async with serve(make_settings()) as served:
        assert_error(await served.client.get("/v1/users/nobody"), 404, "user_not_found")
        assert_error(await served.client.delete("/v1/users/nobody"), 404, "user_not_found")
        await served.client.post("/v1/users/gone/events", json={"events": _events("b2")})
        deleted = await served.client.delete("/v1/users/gone")
        assert deleted.status_code == 200 and deleted.json() == {"user_id": "gone",
                                                                 "deleted": True}
        assert_error(await served.client.get("/v1/users/gone"), 404, "user_not_found")


async def test_an_event_older_than_the_newest_is_409_and_changes_nothing(serve, make_settings):
    async with serve(make_settings()) as served:
        first = await served.client.post("/v1/users/u/events",
                                         json={"events": _events("b2", "g3", start=100.0)})
        late = await served.client.post("/v1/users/u/events",
                                        json={"events": _events("b4", start=50.0)})
        same_time = await served.client.post("/v1/users/u/events",
                                             json={"events": _events("b6", start=101.0)})
        after = (await served.client.get("/v1/users/u")).json()
    details = assert_error(late, 409, "out_of_order")["details"]
    assert details == {"last_timestamp": 101.0, "oldest_sent": 50.0}
    assert first.json()["events_total"] == 2
    assert same_time.status_code == 200 and after["events_total"] == 3


@pytest.mark.parametrize("events_per_append", [1, 5])
async def test_concurrent_appends_lose_no_event(serve, make_settings, events_per_append):
    """5-event appends run in the thread pool, so the appends really interleave."""
    appends = 12
    async with serve(make_settings()) as served:
        answers = await asyncio.gather(*(
            served.client.post("/v1/users/racer/events",
                               json={"events": _events(*(["b2"] * events_per_append))})
            for _ in range(appends)
        ))
        final = (await served.client.get("/v1/users/racer")).json()
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert final["events_total"] == appends * events_per_append


@pytest.mark.parametrize("user_id", ["has space", "a" * 129, "brace{", "semi;colon"])
async def test_invalid_user_ids_are_422(serve, make_settings, user_id):
    async with serve(make_settings()) as served:
        response = await served.client.post(f"/v1/users/{user_id}/events",
                                            json={"events": _events("b2")})
    assert_error(response, 422, "validation_error")


async def test_too_many_events_in_one_append_is_422(serve, make_settings):
    async with serve(make_settings(max_events_per_user=3)) as served:
        response = await served.client.post("/v1/users/u/events",
                                            json={"events": _events("b2", "b4", "b6", "b8")})
        empty = await served.client.post("/v1/users/u/events", json={"events": []})
    assert_error(response, 422, "too_many_events")
    assert_error(empty, 422, "validation_error")


async def test_a_reload_rebuilds_the_state_with_the_new_bundle(
    serve, make_settings, single_bundle, single_reference
):
    raws = ["b2", "g3", "b4"]
    async with serve(make_settings()) as served:
        await served.client.post("/v1/users/u/events", json={"events": _events(*raws)})
        await served.runtime.reload(single_bundle)
        stored = (await served.client.get("/v1/users/u")).json()
        appended = (await served.client.post("/v1/users/u/events",
                                             json={"events": _events("b6")})).json()
    assert stored["bundle_version"] == single_reference.version
    np.testing.assert_allclose(stored["vector"], single_reference.outputs(raws)["user_vector"],
                               atol=1e-4)
    np.testing.assert_allclose(appended["vector"],
                               single_reference.outputs([*raws, "b6"])["user_vector"], atol=1e-4)


async def test_user_id_instead_of_events_reads_the_stored_state(serve, make_settings, reference):
    raws = ["b2", "g3", "b4", "g5"]
    async with serve(make_settings()) as served:
        await served.client.post("/v1/users/reader/events", json={"events": _events(*raws)})
        stored = {"user_id": "reader"}
        embed = (await served.client.post("/embed", json={"users": [stored]})).json()
        profile = (await served.client.post("/predict-profile", json={"users": [stored]})).json()
        recommend = (await served.client.post(
            "/recommend", json={"users": [stored], "domain": "games", "k": 3})).json()
        missing = await served.client.post("/embed", json={"users": [{"user_id": "nobody"}]})
        neither = await served.client.post("/embed", json={"users": [{}]})
    expected = reference.outputs(raws)
    result = embed["results"][0]
    np.testing.assert_allclose(result["vector"], expected["user_vector"], atol=1e-4)
    assert result["user_id"] == "reader" and result["events_used"] == 4
    probabilities = profile["results"][0]["attributes"]["age"]["probabilities"]
    np.testing.assert_allclose(list(probabilities.values()), softmax(expected["profile.age"]),
                               atol=1e-4)
    seen = {f"games::{raw}" for raw in raws}
    top = [item["item_id"] for item in recommend["results"][0]["items"]]
    assert top == reference.top_k("games", raws, 3, seen)
    assert recommend["results"][0]["known_events"] == 2  # the books events the head reads
    assert_error(missing, 404, "user_not_found")
    assert_error(neither, 422, "validation_error")
