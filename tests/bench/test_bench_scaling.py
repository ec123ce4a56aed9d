"""Training-at-scale benchmarks: the baselines at a tiny size, the data cost curve's summary and
the markdown of all three sections."""

from __future__ import annotations

from typing import Any

from uservec.bench.baselines import run_baselines_bench
from uservec.bench.data_scale import summarise
from uservec.bench.report import render


def data_row(events: int, prepare_s: float, rss: float) -> dict[str, Any]:
    return {"events": events, "generate_seconds": 1.0, "file_mb": events / 1e5,
            "prepare": {"seconds": prepare_s, "peak_rss_mb": rss, "users": events // 35,
                        "items": events // 1000, "events": events},
            "epoch": {"events_per_s": 1000, "steps": 3, "seconds": 2.0, "epoch_fraction": 0.5,
                      "epoch_seconds_projected": events // 1000, "peak_rss_mb": rss + 10}}


def test_quick_baselines_time_and_measure_every_baseline_with_both_solvers():
    result = run_baselines_bench(quick=True)
    solvers = [row["solver"] for row in result["rows"]]
    assert solvers == ["exact", "by shape"]
    for row in result["rows"]:
        assert set(row["baselines"]) == {"popularity", "cooc", "ridge"}
        assert all(b["peak_rss_mb"] > 0 for b in row["baselines"].values())
    # below EXACT_MAX "by shape" is the exact solve: the same ranking quality
    exact, by_shape = (row["baselines"]["ridge"]["ndcg_at_10"] for row in result["rows"])
    assert exact == by_shape


def test_the_cost_curve_compares_each_size_with_the_smallest_and_checks_the_rss_target():
    linear = summarise([data_row(1_000_000, 10.0, 500.0), data_row(10_000_000, 100.0, 900.0)])
    assert [r["prepare_seconds_per_event_vs_smallest"] for r in linear["rows"]] == [1.0, 1.0]
    assert linear["rss_target_met"] is True
    worse = summarise([data_row(1_000_000, 10.0, 500.0), data_row(10_000_000, 300.0, 5000.0)])
    assert worse["rows"][1]["prepare_seconds_per_event_vs_smallest"] == 3.0
    assert worse["rss_target_met"] is False
    text = render({"meta": {"cpu": "c", "cores": 2, "load_before": "0", "load_after": "0",
                            "seed": 0, "model_source": "m", "seconds": 1.0},
                   "data_scale": worse})
    assert "| peak RSS at 10,000,000 events | <= 4,096 MB | 5,010 MB | **no** |" in text
    assert "## Data larger than memory: cost curve" in text
