"""Hostile inputs against the real app: never a 5xx, always the one error shape.

The catalogue lives in :mod:`uservec.bench.hostile` (the robustness benchmark sends the same
requests to a live server). One app serves every case (the cases are independent requests); each
case is its own test so a failure names the input, and the app must still answer afterwards.
A stalled request head concerns the HTTP server, not the app: that case runs over a real socket
only (tests/bench/test_bench_robustness.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from service_helpers import Served, running

from uservec.bench.hostile import SERVER_SETTINGS, HostileCase, check_answer
from uservec.bench.hostile_users import all_cases
from uservec.service.settings import Settings

pytestmark = pytest.mark.anyio
CASES = [case for case in all_cases() if case.stall != "head"]
OK_BODY = {"users": [{"events": [{"item_id": "b0", "domain": "books"}]}]}


@pytest.fixture(scope="module")
async def served(main_bundle: Path) -> AsyncIterator[Served]:
    settings = Settings(bundle_path=main_bundle, reload_on_sighup=False, max_batch_wait_ms=1.0,
                        ort_intra_op_threads=1, **{**SERVER_SETTINGS, "body_timeout_s": 0.3})
    async with running(settings) as app:
        yield app


async def send(client: Any, case: HostileCase) -> tuple[int, bytes]:
    """Send a case; an exception escaping the app counts as the 500 a real server would send."""
    headers = {"content-type": case.content_type} if case.content_type else {}
    headers.update(case.headers)
    content: Any = case.body
    if case.stall == "body":
        async def stalled() -> AsyncIterator[bytes]:
            yield case.body
            await asyncio.sleep(3600)  # the app's body deadline must answer first
            yield b""

        content = stalled()
    elif case.chunked:
        async def stream() -> AsyncIterator[bytes]:
            for start in range(0, len(case.body), 1 << 16):
                yield case.body[start : start + (1 << 16)]

        content = stream()
    try:
        response = await client.request(case.method, case.path, content=content,
                                        headers=headers)
    except Exception as exc:
        return 500, f"{type(exc).__name__}: {exc}".encode()
    return response.status_code, response.content


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_hostile_input_is_answered_cleanly(case: HostileCase, served: Served) -> None:
    status, body = await send(served.client, case)
    assert check_answer(case, status, body) is None
    assert (await served.client.post("/embed", json=OK_BODY)).status_code == 200


async def test_lone_surrogate_echoed_in_an_error_gets_the_error_shape(served: Served) -> None:
    """Regression: an unknown domain '\\udc00' is echoed in the message; rendering it as UTF-8
    raised UnicodeEncodeError inside the error handler (plain-text 500 under uvicorn)."""
    body = b'{"users": [{"events": [{"item_id": "b0"}]}], "domain": "\\udc00"}'
    response = await served.client.post("/recommend", content=body,
                                        headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unknown_domain"


def test_catalogue_covers_the_brief() -> None:
    names = {case.name for case in all_cases()}
    for kind in ("nan", "infinity", "huge", "10mb", "nested", "unicode", "empty_item_id",
                 "duplicate", "bool", "string_k", "number_item_id", "without_events",
                 "no_domain", "gzip", "truncated", "head_", "stalled_body", "stalled_head",
                 "without_admin_key", "users_get_unknown", "users_id_", "users_append_over",
                 "users_older_event"):
        assert any(kind in name for name in names), kind
