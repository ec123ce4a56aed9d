"""known_events and fallback: each endpoint says how much of a sequence it could read, alike."""

from __future__ import annotations

import pytest
from service_helpers import user

pytestmark = pytest.mark.anyio

ENDPOINTS = {"/embed": ({}, "no_signal"), "/predict-profile": ({}, "no_signal"),
             "/recommend": ({"domain": "games"}, "popularity")}


@pytest.mark.parametrize("path", list(ENDPOINTS))
async def test_a_sequence_with_no_known_event_is_marked_on_every_endpoint(
    serve, make_settings, path
):
    """Regression: /embed and /predict-profile answered an empty or all-unknown sequence with
    a vector and a confident profile, unmarked; only /recommend said fallback."""
    extra, fallback = ENDPOINTS[path]
    users = [user(), user("nope-1", "nope-2"), user("b0", "nope-3", "b2")]
    async with serve(make_settings()) as served:
        response = await served.client.post(path, json={"users": users, **extra})
    assert response.status_code == 200, response.text
    empty, unknown, known = response.json()["results"]
    assert (empty["known_events"], empty["events_used"], empty["fallback"]) == (0, 0, fallback)
    assert (unknown["known_events"], unknown["fallback"]) == (0, fallback)
    assert unknown["unknown_items"] == ["nope-1", "nope-2"]
    assert (known["known_events"], known["fallback"]) == (2, None)
    # /recommend reads the known source events only; the others read the whole window
    assert known["events_used"] == (2 if path == "/recommend" else 3)


async def test_recommend_counts_the_known_events_its_head_reads(serve, make_settings):
    async with serve(make_settings()) as served:
        response = await served.client.post("/recommend", json={
            "users": [user("g1", "g3"), user("b0", "g1", "nope")], "domain": "games"})
    games_only, mixed = response.json()["results"]
    # the games head reads books: a user with games only is cold, whatever else it knows
    assert (games_only["known_events"], games_only["fallback"]) == (0, "popularity")
    assert (mixed["known_events"], mixed["events_used"], mixed["fallback"]) == (1, 1, None)
    assert mixed["unknown_items"] == ["nope"]  # an unknown book: the head could have read it
