"""Settings-driven limits: users per request and events per user."""

from __future__ import annotations

import pytest
from service_helpers import assert_error, user

pytestmark = pytest.mark.anyio


async def test_too_many_users_is_a_422(serve, make_settings):
    async with serve(make_settings(max_users_per_request=2)) as served:
        ok = await served.client.post("/embed", json={"users": [user("b0"), user("b2")]})
        too_many = await served.client.post("/embed", json={"users": [user("b0")] * 3})
    assert ok.status_code == 200
    assert assert_error(too_many, 422, "too_many_users")["details"] == {"users": 3, "max": 2}


@pytest.mark.parametrize("path", ["/embed", "/predict-profile", "/recommend"])
async def test_too_many_events_for_one_user_is_a_422(serve, make_settings, path):
    async with serve(make_settings(max_events_per_user=10)) as served:
        body = {"users": [user("b0"), user(*["b0"] * 11)], "domain": "games"}
        if path != "/recommend":
            del body["domain"]
        response = await served.client.post(path, json=body)
    assert assert_error(response, 422, "too_many_events")["details"] == {
        "user": 1, "events": 11, "max": 10}
