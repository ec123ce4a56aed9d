"""The app factory: OpenAPI docs with examples, per-app metrics, and no torch anywhere."""

from __future__ import annotations

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


def test_every_endpoint_is_documented_with_examples():
    spec = create_app().openapi()
    operations = {(path, method): op for path, item in spec["paths"].items()
                  for method, op in item.items()}
    assert set(operations) == {
        ("/embed", "post"), ("/predict-profile", "post"), ("/recommend", "post"),
        ("/v1/bundle", "get"), ("/health/live", "get"), ("/health/ready", "get"),
        ("/metrics", "get"), ("/admin/reload", "post"),
    }
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
            if (status.startswith(("4", "5")) and status != "422") or (status == "422" and \
                    "examples" in response.get("content", {}).get("application/json", {})):
                examples = response["content"]["application/json"]["examples"]
                assert all("error" in e["value"] for e in examples.values()), key


async def test_docs_are_served(serve, make_settings):
    async with serve(make_settings()) as served:
        assert (await served.client.get("/docs")).status_code == 200
        assert (await served.client.get("/openapi.json")).status_code == 200


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

