"""Optional bearer API keys: 401 without a key, 403 with a wrong one, probes stay open."""

from __future__ import annotations

import pytest
from service_helpers import assert_error, user

pytestmark = pytest.mark.anyio

BODY = {"users": [user("b0")]}


async def test_keys_guard_the_api_but_not_the_probes(serve, make_settings):
    async with serve(make_settings(api_keys=["k1", "k2"])) as served:
        missing = await served.client.post("/embed", json=BODY)
        not_bearer = await served.client.post("/embed", json=BODY,
                                              headers={"Authorization": "Basic k1"})
        wrong = await served.client.post("/embed", json=BODY,
                                         headers={"Authorization": "Bearer k3"})
        right = await served.client.post("/embed", json=BODY,
                                         headers={"Authorization": "Bearer k2"})
        probes = [(await served.client.get(p)).status_code
                  for p in ("/health/live", "/health/ready", "/metrics")]
    assert_error(missing, 401, "missing_api_key")
    assert missing.headers["www-authenticate"] == "Bearer"
    assert_error(not_bearer, 401, "missing_api_key")
    assert_error(wrong, 403, "invalid_api_key")
    assert right.status_code == 200
    assert probes == [200, 200, 200]


async def test_without_keys_the_api_is_open(serve, make_settings):
    async with serve(make_settings()) as served:
        assert (await served.client.post("/embed", json=BODY)).status_code == 200


async def test_auth_is_checked_before_the_body(serve, make_settings):
    async with serve(make_settings(api_keys=["k1"])) as served:
        response = await served.client.post("/embed", json={"users": "garbage"})
    assert_error(response, 401, "missing_api_key")
