"""POST /predict-profile: softmax of the graph's logits, per attribute."""

from __future__ import annotations

import numpy as np
import pytest
from service_bundles import AGE_LABELS, GENDER_LABELS, GENDER_PRIOR
from service_helpers import assert_error, random_users, user

pytestmark = pytest.mark.anyio


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


async def test_every_attribute_gets_the_softmax_of_its_logits(serve, make_settings, reference):
    users = random_users(4, seed=5)
    async with serve(make_settings()) as served:
        response = await served.client.post(
            "/predict-profile", json={"users": [user(*u) for u in users]}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["bundle_version"] == reference.version
    for raws, result in zip(users, body["results"], strict=True):
        assert set(result["attributes"]) == {"gender", "age"}
        expected = reference.outputs(raws)
        for name, labels in (("gender", GENDER_LABELS), ("age", AGE_LABELS)):
            prediction = result["attributes"][name]
            probabilities = softmax(expected[f"profile.{name}"].astype(np.float64))
            assert list(prediction["probabilities"]) == list(labels)
            np.testing.assert_allclose(
                list(prediction["probabilities"].values()), probabilities, atol=1e-5
            )
            assert prediction["label"] == labels[int(np.argmax(probabilities))]
            assert prediction["probability"] == max(prediction["probabilities"].values())


async def test_prior_adjusted_shifts_the_logits_by_the_training_prior(
    serve, make_settings, reference
):
    users = random_users(6, seed=7)
    body = {"users": [user(*u) for u in users], "attributes": ["gender"]}
    async with serve(make_settings()) as served:
        default = (await served.client.post("/predict-profile", json=body)).json()
        response = await served.client.post("/predict-profile",
                                            json={**body, "decision": "prior_adjusted"})
    assert response.status_code == 200, response.text
    assert default["decision"] == "as_trained"
    assert response.json()["decision"] == "prior_adjusted"
    for raws, result in zip(users, response.json()["results"], strict=True):
        logits = reference.outputs(raws)["profile.gender"].astype(np.float64)
        expected = softmax(logits + np.log(GENDER_PRIOR))  # prior_power 1.0
        prediction = result["attributes"]["gender"]
        np.testing.assert_allclose(list(prediction["probabilities"].values()), expected,
                                   atol=1e-5)
        assert prediction["label"] == GENDER_LABELS[int(np.argmax(expected))]


async def test_prior_adjusted_on_a_head_without_a_prior_is_a_422_naming_it(
    serve, make_settings
):
    async with serve(make_settings()) as served:
        response = await served.client.post(
            "/predict-profile", json={"users": [user("b0")], "decision": "prior_adjusted"}
        )
        unknown = await served.client.post(
            "/predict-profile", json={"users": [user("b0")], "decision": "posterior"}
        )
    error = assert_error(response, 422, "decision_unavailable")
    assert error["details"] == {"attributes": ["age"]}
    assert "re-export" in error["message"]
    assert_error(unknown, 422, "validation_error")


async def test_only_the_requested_attributes_are_returned(serve, make_settings):
    async with serve(make_settings()) as served:
        response = await served.client.post(
            "/predict-profile", json={"users": [user("b0")], "attributes": ["age"]}
        )
    assert list(response.json()["results"][0]["attributes"]) == ["age"]


async def test_an_unknown_attribute_is_a_422_naming_the_available_ones(serve, make_settings):
    async with serve(make_settings()) as served:
        response = await served.client.post(
            "/predict-profile", json={"users": [user("b0")], "attributes": ["age", "height"]}
        )
    error = assert_error(response, 422, "unknown_attribute")
    assert error["details"] == {"unknown": ["height"], "available": ["gender", "age"]}


async def test_an_empty_attribute_list_is_a_422_that_points_at_the_field(serve, make_settings):
    async with serve(make_settings()) as served:
        response = await served.client.post(
            "/predict-profile", json={"users": [user("b0")], "attributes": []}
        )
    error = assert_error(response, 422, "validation_error")
    assert [d["loc"] for d in error["details"]] == [["body", "attributes"]]


async def test_each_endpoint_computes_only_what_the_cache_lacks(serve, make_settings):
    body = {"users": [user("b0", "g1", "b2")]}
    async with serve(make_settings()) as served:
        first = await served.client.post("/embed", json=body)
        # the heads were not computed by /embed: one run, for them alone
        profile = await served.client.post("/predict-profile", json=body)
        assert served.metric("uservec_batch_size_count") == 2
        again = [await served.client.post(path, json=body)
                 for path in ("/embed", "/predict-profile")]
        assert served.metric("uservec_batch_size_count") == 2  # both answered from the cache
    assert [r.json()["results"][0]["cached"] for r in (first, profile, *again)] == [
        False, False, True, True]
    assert again[0].json()["results"] == [{**first.json()["results"][0], "cached": True}]
