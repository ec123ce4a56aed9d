from __future__ import annotations

from pathlib import Path

from training.bench.int8 import run_int8


def test_quick_int8_reports_speed_and_agreement_per_method(quick_bundle: Path) -> None:
    result = run_int8(quick_bundle, quick=True, seed=0)
    assert set(result["methods"]) == {"static", "dynamic"}
    for method in result["methods"].values():
        assert method["speedup_batch1"] > 0 and method["speedup_batch32"] > 0
        assert set(method["top10_overlap"]) == {"query.games"}
        assert set(method["argmax_agreement"]) == {"profile.gender", "profile.age"}
        assert all(0.0 <= v <= 1.0 for v in method["top10_overlap"].values())
    assert result["fp32_ms_batch1"] > 0


def test_a_bundle_without_its_run_reports_agreement_only(quick_bundle: Path) -> None:
    result = run_int8(quick_bundle, quick=True, seed=0)
    assert isinstance(result["task_metric"], str) and "not measured" in result["task_metric"]
    assert all("task_metric_change" not in m for m in result["methods"].values())
