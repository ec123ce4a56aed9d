"""POST /recommend against brute-force numpy over the bundle's item vectors."""

from __future__ import annotations

import pytest
from service_bundles import BOOKS, GAMES, MAX_LEN
from service_helpers import assert_error, random_users, user

from uservec.contract.ids import item_key

pytestmark = pytest.mark.anyio


def keys(raws: list[str], domain: str) -> set[str]:
    return {item_key(raw, domain) for raw in raws}


async def test_top_k_equals_brute_force_without_the_users_own_items(
    serve, make_settings, reference
):
    users = random_users(6, seed=11, min_len=3)
    async with serve(make_settings()) as served:
        response = await served.client.post(
            "/recommend", json={"users": [user(*u) for u in users], "domain": GAMES, "k": 5}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["domain"], body["task"], body["bundle_version"]) == (
        GAMES, "games", reference.version)
    for raws, result in zip(users, body["results"], strict=True):
        if not any(r.startswith("b") for r in raws):  # no books event: the games head is cold
            assert result["fallback"] == "popularity"
            continue
        assert result["fallback"] is None
        expected = reference.top_k("games", raws, 5, excluded=keys(raws, GAMES))
        assert [item["item_id"] for item in result["items"]] == expected
        scores = [item["score"] for item in result["items"]]
        assert scores == sorted(scores, reverse=True)


async def test_exclusions_from_the_request_and_the_user_apply_and_seen_items_may_stay(
    serve, make_settings, reference
):
    raws = ["b0", "g1", "b2", "g3"]
    unfiltered = reference.top_k("games", raws, 8, excluded=set())
    async with serve(make_settings()) as served:
        response = await served.client.post("/recommend", json={
            "users": [user(*raws, exclude=[unfiltered[1]])],
            "domain": GAMES, "k": 4, "exclude_seen": False, "exclude": [unfiltered[0]],
        })
    items = [item["item_id"] for item in response.json()["results"][0]["items"]]
    assert items == unfiltered[2:6]


async def test_a_user_with_no_known_source_event_gets_the_popularity_list(
    serve, make_settings, reference
):
    _, games = reference.item_vectors("games")
    popular = [key.split("::")[1] for key in reversed(games)]  # the test bundle's popularity
    async with serve(make_settings()) as served:
        response = await served.client.post("/recommend", json={
            "users": [user("g1", "never-seen"), user(), user(popular[0])],
            "domain": GAMES, "k": 3,
        })
        assert served.metric("uservec_recommend_fallbacks_total", domain=GAMES) == 3
    only_games, empty, has_popular = response.json()["results"]
    assert only_games["fallback"] == "popularity" and only_games["unknown_items"] == ["never-seen"]
    assert [i["item_id"] for i in only_games["items"]] == [p for p in popular if p != "g1"][:3]
    assert [i["item_id"] for i in empty["items"]] == popular[:3]
    assert all(i["score"] is None for i in empty["items"])
    assert [i["item_id"] for i in has_popular["items"]] == popular[1:4]  # own item excluded


async def test_k_larger_than_the_catalogue_returns_every_remaining_item(serve, make_settings):
    async with serve(make_settings()) as served:
        response = await served.client.post(
            "/recommend", json={"users": [user("b0", "g1")], "domain": GAMES, "k": 100}
        )
    items = response.json()["results"][0]["items"]
    assert len(items) == 30  # 31 games minus the one the user has
    assert "g1" not in {i["item_id"] for i in items}


async def test_the_domain_is_required_when_the_bundle_has_several(serve, make_settings):
    async with serve(make_settings()) as served:
        missing = await served.client.post("/recommend", json={"users": [user("b0")]})
        unknown = await served.client.post(
            "/recommend", json={"users": [user("b0")], "domain": "music"}
        )
    assert assert_error(missing, 422, "domain_required")["details"] == {
        "available": [BOOKS, GAMES]}
    assert assert_error(unknown, 422, "unknown_domain")["details"]["domain"] == "music"


async def test_the_domain_may_be_omitted_when_the_bundle_has_one(
    serve, make_settings, single_bundle, single_reference
):
    async with serve(make_settings(bundle_path=single_bundle)) as served:
        response = await served.client.post("/recommend", json={"users": [user("b0", "b2")]})
    assert response.status_code == 200, response.text
    assert response.json()["domain"] == GAMES
    expected = single_reference.top_k("games", ["b0", "b2"], 10, excluded=set())
    assert [i["item_id"] for i in response.json()["results"][0]["items"]] == expected


@pytest.mark.parametrize("k", [0, -1, 101])
async def test_k_outside_its_range_is_refused(serve, make_settings, k):
    async with serve(make_settings()) as served:
        response = await served.client.post(
            "/recommend", json={"users": [user("b0")], "domain": GAMES, "k": k}
        )
    assert assert_error(response, 422, "k_out_of_range")["details"] == {"k": k, "min": 1,
                                                                           "max": 100}


async def test_too_many_excluded_ids_are_refused_per_list(serve, make_settings):
    async with serve(make_settings(max_exclude=2)) as served:
        within = await served.client.post("/recommend", json={
            "users": [user("b0", exclude=["g1", "g3"])], "domain": GAMES, "exclude": ["g5", "g7"]})
        per_user = await served.client.post("/recommend", json={
            "users": [user("b0"), user("b0", exclude=["g1", "g3", "g5"])], "domain": GAMES})
        request = await served.client.post("/recommend", json={
            "users": [user("b0")], "domain": GAMES, "exclude": ["g1", "g3", "g5"]})
    assert within.status_code == 200, within.text
    assert assert_error(per_user, 422, "too_many_excluded")["details"] == {
        "user": 1, "excluded": 3, "max": 2}
    assert assert_error(request, 422, "too_many_excluded")["details"]["user"] is None


async def test_recommend_after_embed_runs_only_the_task_graph(serve, make_settings, monkeypatch):
    # a sequence of source-domain events only: /recommend reads it as /embed does
    body = {"users": [user("b0", "b4", "b2")]}
    async with serve(make_settings()) as served:
        await served.client.post("/embed", json=body)
        graphs = served.app.state.runtime.current.graphs
        ran = []
        for name, graph in graphs.items():
            def spy(*args, _run=graph.session.run, _name=name, **kwargs):
                ran.append(_name)
                return _run(*args, **kwargs)
            monkeypatch.setattr(graph.session, "run", spy)
        first = await served.client.post("/recommend", json={**body, "domain": GAMES})
        again = await served.client.post("/recommend", json={**body, "domain": GAMES})
    assert ran == ["query.games"]  # not the user vector's pass, not the fused graph
    assert [r.json()["results"][0]["cached"] for r in (first, again)] == [False, True]
    assert first.json()["results"][0]["items"] == again.json()["results"][0]["items"]


async def test_k_defaults_to_the_setting(serve, make_settings):
    async with serve(make_settings(default_k=3)) as served:
        response = await served.client.post(
            "/recommend", json={"users": [user("b0", "g1")], "domain": GAMES}
        )
    assert len(response.json()["results"][0]["items"]) == 3


async def test_source_events_followed_by_many_target_events_still_get_recommendations(
    serve, make_settings, reference
):
    """Regression: the window was cut before the source events were picked, so 10 books followed
    by 50 games left the games head nothing to read (fallback: popularity)."""
    books = [f"b{2 * i}" for i in range(10)]
    games = [f"g{2 * (i % 31) + 1}" for i in range(50)]
    async with serve(make_settings()) as served:
        mixed = await served.client.post(
            "/recommend", json={"users": [user(*books, *games)], "domain": GAMES, "k": 5})
    result = mixed.json()["results"][0]
    assert result["fallback"] is None and result["known_events"] == result["events_used"] == 8
    # the query is the books' (the latest MAX_LEN of them), the user's games are excluded
    expected = reference.top_k("games", books, 5, excluded=keys(games, GAMES))
    assert [item["item_id"] for item in result["items"]] == expected


@pytest.mark.parametrize(("target", "early"), [(GAMES, "g1"), (BOOKS, "b0")])
async def test_exclude_seen_covers_items_sent_long_before_the_window(
    serve, make_settings, target, early
):
    """The item is sent once, first, then MAX_LEN + 4 events of the head's source domain: it sits
    outside every window, and must still not be recommended back."""
    source = [f"b{2 * i}" for i in range(1, MAX_LEN + 5)] if target == GAMES else [
        f"g{2 * i + 1}" for i in range(1, MAX_LEN + 5)]
    async with serve(make_settings()) as served:
        response = await served.client.post(
            "/recommend", json={"users": [user(early, *source)], "domain": target, "k": 100})
    items = {item["item_id"] for item in response.json()["results"][0]["items"]}
    catalogue = 31  # items per domain in the test bundle
    assert early not in items and len(items) == catalogue - 1


async def test_an_event_without_a_domain_is_resolved_or_refused_never_unknown(
    serve, make_settings
):
    """Regression: without 'domain' a two-domain bundle read the item as unknown, and /recommend
    then recommended that very item back."""
    async with serve(make_settings()) as served:
        resolved = await served.client.post("/recommend", json={
            "users": [{"events": [{"item_id": "b0"}, {"item_id": "g1"}]}], "domain": GAMES,
            "k": 100})
        unknown = await served.client.post("/recommend", json={
            "users": [{"events": [{"item_id": "b0"}, {"item_id": "nope"}]}], "domain": GAMES})
    result = resolved.json()["results"][0]
    assert result["unknown_items"] == [] and result["known_events"] == 1
    assert "g1" not in {item["item_id"] for item in result["items"]}
    error = assert_error(unknown, 422, "domain_required")
    assert error["details"] == {"user": 0, "event": 1, "item_id": "nope", "domains": [],
                                "available": [BOOKS, GAMES]}
