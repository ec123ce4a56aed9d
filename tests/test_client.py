"""uservec.client: typed results equal to the service's JSON, the service's error codes as
exceptions, sync and async alike, and an import that needs neither torch nor the service."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from uservec.bench.server import ServerProcess
from uservec.client import (
    AsyncClient,
    AttributePrediction,
    BundleSummary,
    Client,
    EmbedResult,
    Event,
    ProfileResult,
    RecommendedItem,
    RecommendResult,
    ServiceError,
    User,
)
from uservec.client import TaskSummary as ClientTaskSummary
from uservec.service import schemas
from uservec.service.app import create_app
from uservec.service.settings import Settings

REPO = Path(__file__).resolve().parents[1]
# the tiny bundle (tests/tiny_export.py): odd ids are books (the source), even ids are games
BOOK, GAME = Event("1", "books"), Event("2", "games")


@pytest.fixture(scope="module")
def server(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("client") / "server.log"
    with ServerProcess(bundle_dir, log, core=None, max_batch_wait_ms=0.5) as running:
        yield f"http://127.0.0.1:{running.port}"


def test_sync_client_results_are_the_services_json_typed(server: str) -> None:
    user = User([BOOK, Event("3", "books", timestamp=5.0)], user_id="u1", exclude=["4"])
    raw = httpx.post(f"{server}/recommend", json={
        "users": [user.to_json(with_exclude=True)], "domain": "games", "k": 3}).json()
    with Client(server) as client:
        assert client.ready()
        (embedded,) = client.embed([user])
        (profile,) = client.predict_profile([user], attributes=["gender"])
        (recommended,) = client.recommend([user], domain="games", k=3)
        summary = client.bundle()
    assert isinstance(embedded, EmbedResult) and len(embedded.vector) == embedded.dim
    assert (embedded.user_id, embedded.known_events, embedded.fallback) == ("u1", 2, None)
    assert isinstance(profile.attributes["gender"], AttributePrediction)
    assert set(profile.attributes["gender"].probabilities) == {"F", "M"}
    assert recommended.items == [RecommendedItem(**item) for item in raw["results"][0]["items"]]
    assert "4" not in {item.item_id for item in recommended.items}
    assert isinstance(summary, BundleSummary) and summary.recommend_domains == ["games"]
    assert {task.name for task in summary.tasks} == {"gender", "age", "games"}


def test_refusals_raise_the_services_error_codes(server: str) -> None:
    with Client(server) as client:
        with pytest.raises(ServiceError) as unknown_domain:
            client.recommend([User([BOOK])], domain="music")
        with pytest.raises(ServiceError) as no_domain:
            client.embed([User([Event("never-seen")])])
        with pytest.raises(ServiceError) as k_range:
            client.recommend([User([BOOK])], domain="games", k=0)
        with pytest.raises(ServiceError) as raw_dict:
            client.embed([{"events": [{"item_id": 7}]}])
    assert (unknown_domain.value.status, unknown_domain.value.code) == (422, "unknown_domain")
    assert no_domain.value.code == "domain_required"
    assert no_domain.value.details["item_id"] == "never-seen"
    assert k_range.value.code == "k_out_of_range" and k_range.value.details["k"] == 0
    assert raw_dict.value.code == "validation_error"


def test_an_answer_not_in_the_error_shape_is_still_a_service_error() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(502, text="bad gateway"))
    with Client("http://proxy", transport=transport) as client, pytest.raises(
        ServiceError
    ) as caught:
        client.embed([User([BOOK])])
    assert (caught.value.status, caught.value.code) == (502, "http_502")


@pytest.fixture
async def async_client(bundle_dir: Path) -> AsyncIterator[AsyncClient]:
    app = create_app(Settings(bundle_path=bundle_dir, reload_on_sighup=False,
                              ort_intra_op_threads=1))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), AsyncClient("http://svc",
                                                             transport=transport) as client:
        yield client


@pytest.mark.anyio
async def test_async_client_has_the_same_methods_and_errors(async_client: AsyncClient) -> None:
    empty = User([])
    (embedded,) = await async_client.embed([empty])
    (profile,) = await async_client.predict_profile([User([BOOK, GAME])],
                                                    decision="prior_adjusted",
                                                    attributes=["gender"])
    (cold, warm) = await async_client.recommend([User([GAME]), User([BOOK])], domain="games")
    assert (embedded.known_events, embedded.fallback) == (0, "no_signal")
    assert isinstance(profile, ProfileResult) and profile.fallback is None
    assert isinstance(cold, RecommendResult) and cold.fallback == "popularity"
    assert warm.fallback is None and all(item.score is not None for item in warm.items)
    assert (await async_client.bundle()).domains == ["books", "games"]
    with pytest.raises(ServiceError) as caught:
        await async_client.predict_profile([empty], attributes=["height"])
    assert caught.value.code == "unknown_attribute"


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [(EmbedResult, schemas.EmbedResult), (ProfileResult, schemas.ProfileResult),
     (RecommendResult, schemas.RecommendResult), (AttributePrediction,
                                                  schemas.AttributePrediction),
     (RecommendedItem, schemas.RecommendedItem), (BundleSummary, schemas.BundleSummary),
     (ClientTaskSummary, schemas.TaskSummary)],
)
def test_result_types_have_the_fields_of_the_service_models(ours, theirs) -> None:
    assert {f.name for f in dataclasses.fields(ours)} == set(theirs.model_fields)


def test_the_client_imports_without_torch_or_the_service() -> None:
    code = ("import sys, uservec.client; "
            "print(sorted(m for m in ('torch', 'fastapi', 'uservec.service', 'onnxruntime') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
