from __future__ import annotations

import json
import math
from pathlib import Path

from uservec.bench.report import render, strict_json, targets, write

RESULTS = {
    "meta": {"cpu": "cpu", "cores": 2, "seed": 0, "load_before": "1", "load_after": "2",
             "model_source": "random", "seconds": 3.0},
    "cache": {"target_hit_p50_ms": 2.0,
              "memory": {"hit_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0},
                         "miss_ms": {"p50": 4.0, "p95": 5.0, "p99": 6.0},
                         "hit_server_ms": {"p50": 0.5}, "miss_server_ms": {"p50": 3.0},
                         "miss_over_hit_p50": 4.0, "target_hit_p50_met": True},
              "redis": {"skipped": "no Redis"}},
    "train_speed": {"batch_size": 32, "loss": "full softmax", "vocab_size": 64,
                    "depth_blocks": 2, "threads": 1,
                    "rows": [{"length": 8, "dim": 16, "seq_per_s": float("nan")}]},
    "int8": {"error": "RuntimeError: boom"},
}


def test_strict_json_has_no_nan() -> None:
    clean = strict_json({"a": [1.0, float("nan")], "b": (float("inf"),)})
    assert clean == {"a": [1.0, None], "b": [None]}


def test_render_has_a_table_per_section_and_reports_errors() -> None:
    text = render(strict_json(RESULTS))
    assert "| memory | 1.0 / 2.0 / 3.0 |" in text
    assert "no Redis" in text
    assert "| 8 | n/a |" in text
    assert "Failed: `RuntimeError: boom`" in text
    assert "## Targets" in text


def test_targets_list_the_cache_goal() -> None:
    (row,) = targets(RESULTS)
    assert row[0] == "cache hit p50 (memory)" and row[3] is True


def test_write_produces_strict_json_and_markdown(tmp_path: Path) -> None:
    write(RESULTS, tmp_path)
    data = json.loads((tmp_path / "bench.json").read_text(),
                      parse_constant=lambda _constant: math.nan)  # fails the check below if present
    assert data["train_speed"]["rows"][0]["seq_per_s"] is None
    markdown = (tmp_path / "bench.md").read_text()
    assert markdown.startswith("# uservec benchmarks")
    # the top-level targets are the table's rows
    assert data["targets"] == [{"name": "cache hit p50 (memory)", "goal": "< 2.0 ms",
                                "measured": "1.00 ms client, 0.50 ms server", "met": True}]
    assert "| cache hit p50 (memory) | < 2.0 ms | 1.00 ms client, 0.50 ms server | yes |" in (
        markdown)
