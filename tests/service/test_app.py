"""The app factory: OpenAPI docs with examples, per-app metrics, and no torch anywhere."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from service_helpers import user

from uservec.service.app import create_app
from uservec.service.engine import load_bundle

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]


def test_the_service_never_imports_torch():
    code = (
        "import sys, service.app, service.server, service.engine, service.inference; "
        "from service.app import create_app; create_app(); "
        "print('torch' in sys.modules, 'training' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]


async def openapi(served) -> dict:
    response = await served.client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


async def test_every_endpoint_is_documented_with_examples(serve, make_settings):
    async with serve(make_settings(admin_api_keys=["admin"])) as served:
        spec = await openapi(served)
    operations = {(path, method): op for path, item in spec["paths"].items()
                  for method, op in item.items()}
    assert set(operations) == {
        ("/embed", "post"), ("/predict-profile", "post"), ("/recommend", "post"),
        ("/v1/bundle", "get"), ("/health/live", "get"), ("/health/ready", "get"),
        ("/metrics", "get"), ("/admin/reload", "post"),
        ("/health/live", "head"), ("/health/ready", "head"), ("/metrics", "head"),
        ("/v1/users/{user_id}/events", "post"), ("/v1/users/{user_id}", "get"),
        ("/v1/users/{user_id}", "delete"),
    }
    assert len({op["operationId"] for op in operations.values()}) == len(operations)
    schemas = spec["components"]["schemas"]

    def has_example(content: dict) -> bool:
        media = content.get("application/json") or content.get("text/plain") or {}
        if "example" in media or "examples" in media:
            return True
        ref = media.get("schema", {}).get("$ref", "")
        if not ref:
            ref = (media.get("schema", {}).get("anyOf") or [{}])[0].get("$ref", "")
        return "examples" in schemas.get(ref.rsplit("/", 1)[-1], {})

    for key, op in operations.items():
        if "requestBody" in op:
            assert has_example(op["requestBody"]["content"]), key
        assert has_example(op["responses"]["200"]["content"]), key
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                examples = response["content"]["application/json"]["examples"]
                assert all("error" in e["value"] for e in examples.values()), key


async def test_the_request_examples_are_accepted_by_the_server_that_documents_them(
    serve, make_settings
):
    """Regression: the examples named "books", "movies" and item 1193, which the bundle being
    served refused, so "Try it out" failed."""
    async with serve(make_settings()) as served:
        spec = await openapi(served)
        for path in ("/embed", "/predict-profile", "/recommend"):
            media = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
            for example in media["examples"].values():
                response = await served.client.post(path, json=example["value"])
                assert response.status_code == 200, (path, response.text)
                assert all(r["known_events"] > 0 for r in response.json()["results"])


async def test_security_schemes_appear_only_when_keys_are_configured(serve, make_settings):
    """Regression: the document required bearer auth on every endpoint while keys were off."""
    async with serve(make_settings()) as served:
        open_spec = await openapi(served)
    async with serve(make_settings(api_keys=["k"])) as served:
        keyed = await openapi(served)
    assert "securitySchemes" not in open_spec.get("components", {})
    assert all("security" not in op and "401" not in op["responses"]
               for item in open_spec["paths"].values() for op in item.values())
    assert "HTTPBearer" in keyed["components"]["securitySchemes"]
    embed = keyed["paths"]["/embed"]["post"]
    assert embed["security"] == [{"HTTPBearer": []}] and {"401", "403"} <= set(embed["responses"])
    assert "security" not in keyed["paths"]["/health/ready"]["get"]


async def test_the_document_states_the_settings_limits_and_the_bundles_names(
    serve, make_settings
):
    settings = make_settings(max_users_per_request=5, max_events_per_user=7, max_k=9, default_k=3,
                             max_exclude=11)
    async with serve(settings) as served:
        spec = await openapi(served)
    schemas = spec["components"]["schemas"]
    assert schemas["EmbedRequest"]["properties"]["users"]["maxItems"] == 5
    assert schemas["UserEvents"]["properties"]["events"]["maxItems"] == 7
    recommend = schemas["RecommendRequest"]
    assert recommend["properties"]["k"]["anyOf"][0]["maximum"] == 9
    assert recommend["properties"]["exclude"]["maxItems"] == 11
    assert recommend["properties"]["domain"]["enum"] == ["books", "games"]
    assert "domain" in recommend["required"]  # two recommend domains: one must be named
    # the test bundle's events may omit the domain only for ids that are in one domain
    event = schemas["Event"]["oneOf"]
    assert event[0]["required"] == ["item_id", "domain"]
    assert "b0" in event[1]["properties"]["item_id"]["enum"]
    # gender has a label prior, age does not: prior_adjusted may name gender only
    as_trained, adjusted = schemas["ProfileRequest"]["anyOf"]
    assert set(as_trained["properties"]["attributes"]["anyOf"][0]["items"]["enum"]) == {
        "gender", "age"}
    assert adjusted["properties"]["attributes"]["items"]["enum"] == ["gender"]
    assert "bundle `svc-test-0" in spec["info"]["description"]


async def test_without_a_bundle_the_examples_are_neutral_and_say_so(serve, make_settings):
    async with serve(make_settings(bundle_path=None)) as served:
        spec = await openapi(served)
    assert "illustrative" in spec["info"]["description"]
    media = spec["paths"]["/embed"]["post"]["requestBody"]["content"]["application/json"]
    assert media["examples"]["request"]["summary"] == "illustrative placeholders"


async def test_docs_pages_and_their_assets_are_served_by_the_service(serve, make_settings):
    """Regression: /docs loaded Swagger UI from a CDN and was blank without network access."""
    async with serve(make_settings(max_concurrent_requests=1)) as served:
        pages = {path: await served.client.get(path) for path in ("/docs", "/redoc")}
        for page in pages.values():
            assert page.status_code == 200
            sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
            assert sources and all(src.startswith("/") for src in sources), sources
            for src in sources:
                asset = await served.client.get(src)
                assert asset.status_code == 200 and len(asset.content) > 1000, src
    assert "swagger-ui-bundle.js" in pages["/docs"].text
    assert "redoc.standalone.js" in pages["/redoc"].text


async def test_each_app_counts_on_its_own_registry(serve, make_settings):
    async with serve(make_settings()) as first, serve(make_settings()) as second:
        await first.client.post("/embed", json={"users": [user("b0")]})
        assert first.metric("uservec_users_total", endpoint="embed") == 1
        assert second.metric("uservec_users_total", endpoint="embed") == 0


async def test_a_bundle_loaded_before_startup_is_served_without_reading_the_path_again(
    make_settings, main_bundle, corrupt_bundle
):
    # `uservec serve` loads the bundle first; the app must serve that object, not load it again
    loaded = load_bundle(main_bundle)
    app = create_app(make_settings(bundle_path=corrupt_bundle), loaded)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            assert (await client.get("/health/ready")).status_code == 200
            assert (await client.post("/embed", json={"users": [user("b0")]})).status_code == 200
        assert app.state.runtime.current is loaded
        assert app.state.runtime.bundle_path == main_bundle

