"""GET /v1/bundle: the manifest summary of the bundle being served."""

from __future__ import annotations

import pytest
from service_bundles import DIM, MAX_LEN
from service_helpers import assert_error

pytestmark = pytest.mark.anyio


async def test_the_summary_describes_the_served_bundle(serve, make_settings, reference):
    async with serve(make_settings(api_keys=["k"])) as served:
        unauthenticated = await served.client.get("/v1/bundle")
        response = await served.client.get("/v1/bundle", headers={"Authorization": "Bearer k"})
    assert_error(unauthenticated, 401, "missing_api_key")
    body = response.json()
    assert body["bundle_version"] == reference.version
    assert (body["max_len"], body["dim"], body["vocab_size"]) == (MAX_LEN, DIM, 64)
    assert body["domains"] == ["books", "games"]
    assert body["recommend_domains"] == ["books", "games"]
    tasks = {t["name"]: t for t in body["tasks"]}
    assert tasks["gender"]["labels"] == ["F", "M"]
    assert (tasks["gender"]["class_prior"], tasks["gender"]["prior_power"]) == ([0.3, 0.7], 1.0)
    assert tasks["age"]["class_prior"] is None  # a head exported without a prior
    assert tasks["games"]["source_domains"] == ["books"]
    assert tasks["games"]["num_items"] == 31 and tasks["games"]["index_kind"] == "flat"
