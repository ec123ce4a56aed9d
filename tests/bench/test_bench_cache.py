from __future__ import annotations

from pathlib import Path

import pytest

from uservec.bench.cache import run_cache


def test_quick_cache_measures_hits_and_misses_in_one_run(quick_bundle: Path,
                                                         workdir: Path) -> None:
    result = run_cache(quick_bundle, workdir, quick=True, seed=0)
    memory = result["memory"]
    assert memory["failed"] == 0
    assert memory["hit_share"] == pytest.approx(0.5)  # every sequence: a miss, then a hit
    assert memory["miss_over_hit_p50"] == pytest.approx(
        memory["miss_ms"]["p50"] / memory["hit_ms"]["p50"])
    assert memory["target_hit_p50_met"] == (memory["hit_ms"]["p50"] < 2.0)
    bare = result["hit_vs_bare"]
    assert bare["ratio_p50"] == pytest.approx(bare["service_us"]["p50"] / bare["bare_us"]["p50"])
    assert bare["met"] == (bare["ratio_p50"] <= 2.0)
    assert "skipped" in result["redis"] or result["redis"]["hit_share"] == pytest.approx(0.5)
