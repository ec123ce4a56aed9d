from __future__ import annotations

from pathlib import Path

import pytest

from uservec.bench.serving import run_serving


def test_quick_serving_compares_http_with_the_raw_engine(quick_bundle: Path,
                                                         workdir: Path) -> None:
    result = run_serving(quick_bundle, workdir, quick=True, seed=0)
    assert [row["concurrency"] for row in result["levels"]] == [1, 4]
    for row in result["levels"]:
        on, off = row["batching_on"], row["batching_off"]
        assert on["failed"] == 0 and off["failed"] == 0
        assert on["cached_share"] == 0.0 and off["cached_share"] == 0.0  # all misses
        assert off["mean_batch_size"] == 1.0
        best = max(on["requests_per_s"], off["requests_per_s"])
        assert row["ratio_vs_raw_batch1"] == pytest.approx(best / row["raw_batch1_seq_s"])
        assert row["ratio_vs_raw_batchc"] == pytest.approx(best / row["raw_batchc_seq_s"])
        assert row["best_batching"] == ("on" if on["requests_per_s"] >= off["requests_per_s"]
                                        else "off")
        for key in ("p50", "p95", "p99"):
            assert on["latency_ms"][key] > 0
    assert set(result["raw_engine_seq_s"]) == {"1", "4"}
    assert result["target"]["met"] == (result["target"]["ratio_vs_raw_batchc"] >= 0.7)
    assert "core" in result["cores"]
