from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from uservec.bench.fuzzing import _unique_failures
from uservec.bench.hostile import HostileCase, check_answer
from uservec.bench.hostile_live import hostile
from uservec.bench.robustness import (
    _window,
    load_test,
    quarter_growth,
    redis_fault,
    reload_fault,
)
from uservec.bench.slow_clients import slow_sockets


def test_quarter_growth_compares_first_and_last_quarter() -> None:
    mb = 2**20
    samples = [(float(t), (100 + t) * mb) for t in range(101)]
    growth = quarter_growth(samples, 0.0, 100.0)
    assert growth["first_quarter_mb"] == pytest.approx(112.5)
    assert growth["last_quarter_mb"] == pytest.approx(187.5)
    assert growth["growth_mb"] == pytest.approx(75.0)


def test_quarter_without_samples_uses_the_nearest_one() -> None:
    samples = [(0.0, 100 * 2**20), (10.0, 110 * 2**20)]
    growth = quarter_growth(samples, 0.0, 2.0)  # both quarters nearest to the first sample
    assert growth["growth_mb"] == 0.0 and growth["first_quarter_mb"] == 100.0


def test_window_counts_failures_and_hit_rate() -> None:
    timeline = [[1.0, 0.01, 200, 1], [2.0, 0.01, 200, 0], [3.0, 0.01, 503, 0], [9.0, 0.1, 200, 1]]
    window = _window(timeline, 0.0, 5.0)
    assert window == {"requests": 3, "failed": 1, "server_errors": 1, "hit_rate": 0.5}


def test_check_answer_rejects_5xx_wrong_status_and_wrong_shape() -> None:
    case = HostileCase("c", "/embed", b"", frozenset({422}))
    good = b'{"error": {"code": "validation_error", "message": "m", "details": null}}'
    assert check_answer(case, 422, good) is None
    assert "server error" in (check_answer(case, 500, b"boom") or "")
    assert "not in" in (check_answer(case, 400, good) or "")
    assert "shape" in (check_answer(case, 422, b'{"detail": "x"}') or "")


def test_bounded_load_has_no_failures(quick_bundle: Path, workdir: Path) -> None:
    result = load_test(quick_bundle, workdir, requests=200, seed=0)
    assert result["requests"] == 200 and result["failed"] == 0 and result["server_errors"] == 0
    assert result["rss"]["first_quarter_mb"] > 0


def test_reloads_under_load_lose_no_request(quick_bundle: Path, workdir: Path) -> None:
    result = reload_fault(quick_bundle, workdir, seconds=3.0, reloads=2, seed=0)
    assert result["failed"] == 0 and result["requests"] > 0
    assert result["reload_statuses"] == [200, 200]
    assert result["corrupt_reload_status"] == 409
    assert result["corrupt_reload_code"] == "bundle_rejected"
    assert result["old_bundle_kept_serving"] and result["passed"]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_redis_outage_under_load_is_only_misses(quick_bundle: Path, workdir: Path) -> None:
    result = redis_fault(quick_bundle, workdir, seconds=3.0, seed=0)
    assert result["server_errors"] == 0 and result["failed"] == 0
    # the outage window is cut by wall clock, so a request that started just before the kill may
    # still count as a hit in it; the point is that the outage is (almost) all misses, not errors
    assert result["redis_down"]["hit_rate"] < 0.05
    assert result["cache_errors_counted"] > 0


def test_hostile_inputs_over_a_real_socket(quick_bundle: Path, workdir: Path) -> None:
    result = hostile(quick_bundle, workdir)
    assert result["failures"] == [] and result["server_alive_after"]
    assert result["inputs_tried"] >= 80 and len(result["rows"]) == result["inputs_tried"]
    assert result["server_5xx"] == 0 and all(row["ok"] for row in result["rows"])
    race = result["concurrent_appends"]
    assert race["lost"] == 0 and race["statuses"] == [200] and race["passed"]
    rows = {row["case"]: row for row in result["rows"]}
    # the slow-client rows over a real socket: both deadlines answer 408 in the error shape
    for name in ("stalled_body", "stalled_head"):
        assert (rows[name]["status"], rows[name]["code"]) == (408, "request_timeout")
        assert rows[name]["seconds"] < 5


def test_stalled_sockets_do_not_lock_the_api_and_readiness_tells_the_truth(
    quick_bundle: Path, workdir: Path
) -> None:
    """Regression: 64 sockets that sent a partial body held every in-flight slot, every other
    request got 429 for as long as they stayed open, and /health/ready stayed 200."""
    result = slow_sockets(quick_bundle, workdir, sockets=256, seconds=2.0, seed=0, deadline_s=1.0)
    assert result["requests"] > 0 and result["status"] == {"200": result["requests"]}
    assert result["latency_ms"]["p99"] < 1000
    assert result["readiness"] and set(result["readiness"]) == {"200"}
    assert result["stalled_answers"].get("408", 0) >= 256  # each dropped at its deadline
    assert result["stalled_held_s"]["max"] < result["body_timeout_s"] + 2
    assert result["server_5xx"] == 0
    saturated = result["saturated"]
    assert saturated["status"].get("429", 0) > 0 and saturated["readiness"].get("503", 0) > 0
    assert result["passed"]


def test_unique_failures_are_read_from_schemathesis_summary() -> None:
    assert _unique_failures("Test cases:\n  416 generated, 4 found 4 unique failures\n") == 4
    assert _unique_failures("Test cases:\n  1645 generated, 1645 passed\n") == 0
