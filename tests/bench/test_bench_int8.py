from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from uservec.bench.int8 import run_int8
from uservec.bench.report import _int8
from uservec.contract.manifest import read_manifest, sealed


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


def test_the_bench_times_the_twin_the_export_shipped(
    quick_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export that kept residual convolutions fp32 ships that twin; timing a whole-encoder
    twin instead would report a speed the bundle never runs at."""
    import uservec.bench.int8 as bench_int8
    from uservec.export.quantize import quantize

    bundle = tmp_path / "bundle"
    shutil.copytree(quick_bundle, bundle)
    manifest = read_manifest(bundle)
    parity = {**manifest.parity, "int8": {**manifest.parity.get("int8", {}), "fp32_blocks": 2}}
    (bundle / "manifest.json").write_text(
        sealed(manifest.model_copy(update={"parity": parity})).model_dump_json())
    seen = []

    def recording_quantize(*args, **kwargs):
        seen.append(args[4] if len(args) > 4 else kwargs.get("fp32_blocks", 0))
        return quantize(*args, **kwargs)

    monkeypatch.setattr(bench_int8, "quantize", recording_quantize)
    result = run_int8(bundle, quick=True, seed=0)
    assert seen == [2, 2] and result["fp32_blocks"] == 2
    assert "first 2 block(s) kept fp32" in "\n".join(_int8(result))
