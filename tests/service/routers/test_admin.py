"""Hot reload: POST /admin/reload and SIGHUP swap bundles atomically; bad bundles are refused."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time

import numpy as np
import pytest
from service_helpers import assert_error, hold_inference, user

pytestmark = pytest.mark.anyio

ADMIN = {"Authorization": "Bearer admin-key"}


async def embed_version(served) -> str:
    response = await served.client.post("/embed", json={"users": [user("b0", "g1")]},
                                        headers={"Authorization": "Bearer api-key"})
    assert response.status_code == 200, response.text
    return str(response.json()["bundle_version"])


async def test_reload_to_a_good_bundle_changes_version_and_outputs(
    serve, make_settings, single_bundle, reference, single_reference
):
    settings = make_settings(api_keys=["api-key"], admin_api_keys=["admin-key"])
    async with serve(settings) as served:
        assert await embed_version(served) == reference.version
        # the bundle loaded at start-up is not a reload
        assert not served.metric("uservec_bundle_reloads_total", result="ok")
        response = await served.client.post(
            "/admin/reload", json={"bundle_path": str(single_bundle)}, headers=ADMIN
        )
        assert response.status_code == 200, response.text
        assert response.json()["previous_version"] == reference.version
        assert response.json()["bundle_version"] == single_reference.version
        result = (await served.client.post(
            "/embed", json={"users": [user("b0", "g1")]},
            headers={"Authorization": "Bearer api-key"})).json()["results"][0]
        # the old bundle's cache entry for this sequence must not be served
        assert result["cached"] is False
        assert await embed_version(served) == single_reference.version
        np.testing.assert_allclose(
            result["vector"], single_reference.outputs(["b0", "g1"])["user_vector"], atol=1e-5)
        ready = (await served.client.get("/health/ready")).json()
        assert ready["bundle_version"] == single_reference.version
        assert served.metric("uservec_bundle_info", bundle_version=single_reference.version,
                             schema_version="1", model_file="model.onnx") == 1
        assert served.metric("uservec_bundle_info", bundle_version=reference.version,
                             schema_version="1", model_file="model.onnx") == 0
        assert served.metric("uservec_bundle_reloads_total", result="ok") == 1


async def test_a_corrupt_bundle_is_refused_and_the_old_one_keeps_serving(
    serve, make_settings, corrupt_bundle, reference
):
    settings = make_settings(api_keys=["api-key"], admin_api_keys=["admin-key"])
    async with serve(settings) as served:
        response = await served.client.post(
            "/admin/reload", json={"bundle_path": str(corrupt_bundle)}, headers=ADMIN
        )
        error = assert_error(response, 409, "bundle_rejected")
        assert "sha256 mismatch" in error["message"]
        assert error["details"]["serving"] == reference.version
        assert await embed_version(served) == reference.version
        assert (await served.client.get("/health/ready")).status_code == 200
        assert served.metric("uservec_bundle_reloads_total", result="rejected") == 1
        missing = await served.client.post(
            "/admin/reload", json={"bundle_path": "/nonexistent/bundle"}, headers=ADMIN
        )
        assert "manifest not found" in assert_error(missing, 409, "bundle_rejected")["message"]


async def test_reload_needs_an_admin_key(serve, make_settings):
    settings = make_settings(api_keys=["api-key"], admin_api_keys=["admin-key"])
    async with serve(settings) as served:
        anonymous = await served.client.post("/admin/reload")
        api_key = await served.client.post(
            "/admin/reload", headers={"Authorization": "Bearer api-key"})
    assert_error(anonymous, 401, "missing_api_key")
    assert_error(api_key, 403, "invalid_api_key")


async def test_in_flight_requests_finish_on_the_bundle_they_started_with(
    serve, make_settings, single_bundle, reference, single_reference, monkeypatch
):
    async with serve(make_settings(admin_api_keys=["admin-key"])) as served:
        # a held model run keeps the first request in flight while the reload happens
        release = hold_inference(served.app, monkeypatch)
        pending = asyncio.ensure_future(
            served.client.post("/embed", json={"users": [user("b0", "g1")]}))
        await asyncio.sleep(0.05)
        reload = await served.client.post("/admin/reload",
                                          json={"bundle_path": str(single_bundle)}, headers=ADMIN)
        release.set()
        assert reload.status_code == 200
        old = await pending
        new = await served.client.post("/embed", json={"users": [user("b0", "g1")]})
    assert old.json()["bundle_version"] == reference.version
    np.testing.assert_allclose(old.json()["results"][0]["vector"],
                               reference.outputs(["b0", "g1"])["user_vector"], atol=1e-5)
    assert new.json()["bundle_version"] == single_reference.version


async def test_sighup_reloads_the_bundle_from_its_path(
    serve, make_settings, main_bundle, single_bundle, tmp_path, reference, single_reference
):
    live = tmp_path / "live"
    shutil.copytree(main_bundle, live)
    settings = make_settings(bundle_path=live, reload_on_sighup=True,
                             admin_api_keys=["admin-key"])
    async with serve(settings) as served:
        shutil.rmtree(live)
        shutil.copytree(single_bundle, live)
        # never send SIGHUP without the app's handler: the default action ends the process
        assert signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, signal.SIG_IGN, None)
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(200):
            await asyncio.sleep(0.02)
            if served.runtime.current.version == single_reference.version:
                break
        assert await embed_version(served) == single_reference.version
        # no body: reload the current path from disk (here: unchanged)
        response = await served.client.post("/admin/reload", headers=ADMIN)
        assert response.json()["previous_version"] == single_reference.version


async def wait_for(condition, timeout_s: float = 4.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never became true")


async def test_a_sighup_with_a_bad_bundle_is_refused_and_the_old_one_keeps_serving(
    serve, make_settings, main_bundle, corrupt_bundle, tmp_path, reference
):
    live = tmp_path / "live"
    shutil.copytree(main_bundle, live)
    async with serve(make_settings(bundle_path=live, reload_on_sighup=True)) as served:
        shutil.rmtree(live)
        shutil.copytree(corrupt_bundle, live)
        assert signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, signal.SIG_IGN, None)
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_for(lambda: served.metric("uservec_bundle_reloads_total", result="rejected"))
        assert served.runtime.current.version == reference.version
        assert await embed_version(served) == reference.version
        assert (await served.client.get("/health/ready")).status_code == 200


async def test_a_reload_while_another_runs_is_a_409_reload_in_progress(
    serve, make_settings, single_bundle, monkeypatch
):
    from uservec.service import runtime as runtime_module

    real = runtime_module.load_configured

    def slow_load(settings, path):
        time.sleep(0.5)
        return real(settings, path)

    monkeypatch.setattr(runtime_module, "load_configured", slow_load)
    async with serve(make_settings(admin_api_keys=["admin-key"])) as served:
        body = {"bundle_path": str(single_bundle)}
        first = asyncio.ensure_future(
            served.client.post("/admin/reload", json=body, headers=ADMIN))
        await asyncio.sleep(0.1)
        second = await served.client.post("/admin/reload", json=body, headers=ADMIN)
        assert (await first).status_code == 200
    assert_error(second, 409, "reload_in_progress")


@pytest.mark.parametrize("keys", [{}, {"api_keys": ["api-key"]}])
async def test_without_an_admin_key_there_is_no_admin_endpoint(serve, make_settings, keys):
    """Regression: with keys off, /admin/reload was open (a fuzzer reloaded the demo 1,896
    times); with only API keys, an API key could reload."""
    async with serve(make_settings(**keys)) as served:
        response = await served.client.post(
            "/admin/reload", headers={"Authorization": "Bearer api-key"})
        spec = (await served.client.get("/openapi.json")).json()
    assert_error(response, 404, "not_found")
    assert "/admin/reload" not in spec["paths"]
