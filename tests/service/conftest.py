"""Service test fixtures: real bundles (exported once, cached), the real app with its lifespan.

``serve(settings)`` runs ``create_app`` with its lifespan and an httpx client over the ASGI
transport, in the test's own event loop, so concurrent requests (``asyncio.gather``) really overlap.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from service_bundles import build_bundle, bundle_source_hash
from service_helpers import OwnRedis, Reference, free_port, redis_answers, running

from uservec.service.settings import Settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def bundle_root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``main`` (2 recommend domains) and ``single`` (1 domain, other weights) bundles."""
    key = bundle_source_hash(REPO)
    cache = getattr(request.config, "cache", None)
    parent = Path(cache.mkdir("uservec-service-bundles")) if cache else tmp_path_factory.mktemp("b")
    root = parent / key
    if not all((root / name).is_dir() for name in ("main", "single", "next")):
        for stale in parent.iterdir():
            shutil.rmtree(stale, ignore_errors=True)
        building = parent / f".{key}.{os.getpid()}"
        build_bundle(building / "main", seed=0, two_domains=True)
        build_bundle(building / "single", seed=1, two_domains=False)
        build_bundle(building / "next", seed=0, two_domains=True, next_item=True)
        building.rename(root)
    return root


@pytest.fixture(scope="session")
def main_bundle(bundle_root: Path) -> Path:
    return bundle_root / "main"


@pytest.fixture(scope="session")
def single_bundle(bundle_root: Path) -> Path:
    return bundle_root / "single"


@pytest.fixture(scope="session")
def next_item_bundle(bundle_root: Path) -> Path:
    """The main bundle's model plus the pretrained next-item head (``next_item.npy``)."""
    return bundle_root / "next"


@pytest.fixture(scope="session")
def reference(main_bundle: Path) -> Reference:
    return Reference(main_bundle)


@pytest.fixture(scope="session")
def single_reference(single_bundle: Path) -> Reference:
    return Reference(single_bundle)


@pytest.fixture
def corrupt_bundle(main_bundle: Path, tmp_path: Path) -> Path:
    """A copy of the main bundle whose model file was truncated after export."""
    copy = tmp_path / "corrupt"
    shutil.copytree(main_bundle, copy)
    model = copy / "model.onnx"
    model.write_bytes(model.read_bytes()[:1000])
    return copy


@pytest.fixture
def make_settings(main_bundle: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "bundle_path": main_bundle,
            "reload_on_sighup": False,
            "max_batch_wait_ms": 1.0,
            "ort_intra_op_threads": 1,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def serve() -> Callable[[Settings], Any]:
    return running


@pytest.fixture
def shared_redis_url() -> str:
    if not redis_answers(6379):
        pytest.skip("no Redis answers on 127.0.0.1:6379 (start one: redis-server --port 6379, or "
                    "run bash .ci/run, which starts one)")
    return "redis://127.0.0.1:6379/0"


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server binary not installed")
    server = OwnRedis(free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()
