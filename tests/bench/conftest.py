"""A quick-size benchmark bundle (dim 16, 2 blocks, length 8, 62 items), exported once."""

from __future__ import annotations

from pathlib import Path

import pytest

from uservec.bench.common import QUICK_MODEL, build_bench_bundle


@pytest.fixture(scope="session")
def quick_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bench_bundle(tmp_path_factory.mktemp("bench") / "bundle", QUICK_MODEL, seed=0)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path
