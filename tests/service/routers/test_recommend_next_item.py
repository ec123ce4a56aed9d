"""/recommend for users with history in the requested domain: the pretrained next-item head."""

from __future__ import annotations

import json

import numpy as np
import pytest
from service_bundles import GAMES
from service_helpers import Reference, event, user

pytestmark = pytest.mark.anyio


def _next_item_top(bundle_dir, vector, seen: set[str], k: int) -> list[str]:
    """Brute force: [v, 1] @ rows over the games items, ties by id, seen keys skipped."""
    rows = np.load(bundle_dir / "next_item.npy")
    keys = json.loads((bundle_dir / "vocab.json").read_text())["keys"]
    reserved = rows.shape[0] - len(keys)
    scored = [(-float(rows[reserved + pos] @ np.append(vector, 1.0)), reserved + pos, key)
              for pos, key in enumerate(keys) if key.startswith(f"{GAMES}::")]
    ranked = [key for _, _, key in sorted(scored) if key not in seen]
    return [key.split("::", 1)[1] for key in ranked[:k]]


async def test_a_user_with_history_in_the_domain_gets_the_next_item_head(
    serve, make_settings, next_item_bundle
):
    raws = ["b2", "g3", "b4", "g5"]
    async with serve(make_settings(bundle_path=next_item_bundle)) as served:
        body = (await served.client.post("/recommend", json={
            "users": [user(*raws), user("b2", "b4")], "domain": "games", "k": 5})).json()
    own, cross = body["results"]
    assert own["answered_by"] == "next_item" and cross["answered_by"] == "games"
    vector = Reference(next_item_bundle).outputs(raws)["user_vector"]
    expected = _next_item_top(next_item_bundle, vector, {"games::g3", "games::g5"}, 5)
    assert [item["item_id"] for item in own["items"]] == expected
    assert own["known_events"] == 4 and own["fallback"] is None


async def test_the_ranking_is_fresh_after_every_appended_event(
    serve, make_settings, next_item_bundle
):
    async with serve(make_settings(bundle_path=next_item_bundle)) as served:
        await served.client.post("/v1/users/fresh/events", json={"events": [event("g3")]})
        first = (await served.client.post("/recommend", json={
            "users": [{"user_id": "fresh"}], "domain": "games", "k": 5})).json()["results"][0]
        await served.client.post("/v1/users/fresh/events", json={"events": [event("b8")]})
        second = (await served.client.post("/recommend", json={
            "users": [{"user_id": "fresh"}], "domain": "games", "k": 5})).json()["results"][0]
    assert first["answered_by"] == second["answered_by"] == "next_item"
    for result, raws in ((first, ["g3"]), (second, ["g3", "b8"])):
        vector = Reference(next_item_bundle).outputs(raws)["user_vector"]
        assert [i["item_id"] for i in result["items"]] == _next_item_top(
            next_item_bundle, vector, {"games::g3"}, 5)


async def test_known_events_count_what_the_answering_head_read(serve, make_settings,
                                                               next_item_bundle):
    async with serve(make_settings(bundle_path=next_item_bundle)) as served:
        response = await served.client.post("/recommend", json={
            "users": [user("g1", "g3"), user("b0", "g1", "nope"), user("b0", "nope"),
                      user("g-unknown")], "domain": "games"})
    games_only, mixed, books_only, nothing = response.json()["results"]
    # history in games: the next-item head, which reads the whole window
    assert games_only["answered_by"] == mixed["answered_by"] == "next_item"
    assert (games_only["known_events"], games_only["fallback"]) == (2, None)
    assert (mixed["known_events"], mixed["events_used"]) == (2, 3)
    # no games: the games head, which reads books only
    assert books_only["answered_by"] == "games"
    assert (books_only["known_events"], books_only["events_used"]) == (1, 1)
    # nothing known anywhere: popularity
    assert (nothing["answered_by"], nothing["fallback"]) == ("popularity", "popularity")


async def test_without_a_next_item_head_the_cross_domain_head_answers(serve, make_settings):
    async with serve(make_settings()) as served:  # the main bundle has no next_item.npy
        body = (await served.client.post("/recommend", json={
            "users": [user("b0", "g1")], "domain": "games"})).json()
    assert body["results"][0]["answered_by"] == "games"
