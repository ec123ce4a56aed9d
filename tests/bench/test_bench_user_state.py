"""The user-state benchmark runs end to end on the quick model and reports every level."""

from __future__ import annotations

from pathlib import Path

from uservec.bench.report import render
from uservec.bench.user_state import run_user_state


def test_user_state_bench_reports_every_level(tmp_path: Path) -> None:
    result = run_user_state(tmp_path, quick=True, seed=0)
    lengths = [row["events"] for row in result["engine"]]
    assert lengths == [8]  # the quick model's max_len caps 50 and 100
    for rows in (result["engine"], result["service_memory"]["rows"], result["http"]):
        assert [r["events"] for r in rows] == lengths
        assert all(r["append_ms"]["p50"] > 0 and r["reencode_ms"]["p50"] > 0 for r in rows)
    assert result["service_memory"]["round_trips_per_append"] == 0
    redis = result["service_redis"]
    assert "skipped" in redis or redis["round_trips_per_append"] == 2
    assert result["state_bytes"] == 4 * result["state_floats"] > 0
    page = render({"meta": {"cpu": "x", "cores": 1, "load_before": "0", "load_after": "0",
                            "seed": 0, "model_source": "m", "seconds": 1.0},
                   "user_state": result})
    assert "User state: append vs re-encode" in page and "append vs re-encode at 8" in page
