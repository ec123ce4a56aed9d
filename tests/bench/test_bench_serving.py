from __future__ import annotations

from pathlib import Path

import pytest

from uservec.bench.serving import endpoint_graph, full_graph_bundle, run_serving
from uservec.bench.wrk import parse_wrk
from uservec.contract.manifest import read_manifest
from uservec.contract.verify import load_and_verify


def test_quick_serving_compares_http_with_the_raw_engine(quick_bundle: Path,
                                                         workdir: Path) -> None:
    result = run_serving(quick_bundle, workdir, quick=True, seed=0)
    assert [row["concurrency"] for row in result["levels"]] == [1, 4]
    for row in result["levels"]:
        on, off, full = row["batching_on"], row["batching_off"], row["full_graph"]
        assert on["failed"] == 0 and off["failed"] == 0 and full["failed"] == 0
        assert on["cached_share"] == 0.0 and off["cached_share"] == 0.0  # all misses
        assert off["mean_batch_size"] == 1.0
        assert row["ratio_vs_raw_batchc"] == pytest.approx(
            on["requests_per_s"] / row["raw_endpoint_batchc_seq_s"])
        assert row["vs_full_graph"] == pytest.approx(on["requests_per_s"]
                                                     / full["requests_per_s"])
        # percentiles over every request of the rounds, not averages of per-round ones
        assert on["latency_ms"]["n"] == on["requests"]
        rounds = on["requests_per_s_rounds"]
        assert rounds["min"] <= rounds["median"] <= rounds["max"]
    assert {"endpoint_batch1", "fused_batch1", "endpoint_batch4"} <= set(
        result["raw_engine_seq_s"])
    names = [t["name"] for t in result["targets"]]
    assert len(names) == 4 and all(isinstance(t["met"], bool) for t in result["targets"])
    assert "core" in result["cores"]


def test_the_full_graph_bundle_is_a_valid_bundle_without_subgraphs(quick_bundle: Path,
                                                                    workdir: Path) -> None:
    full = full_graph_bundle(quick_bundle, workdir / "full")
    manifest = load_and_verify(full, smoke=False)
    assert manifest.model.graphs == [] and not (full / "graphs").exists()
    assert endpoint_graph(full) == full / manifest.model.file
    assert endpoint_graph(quick_bundle).name == "user_vector.onnx"
    assert read_manifest(quick_bundle).model.graphs  # the source is untouched


def test_wrk_output_is_read_in_milliseconds() -> None:
    output = """Running 8s test @ http://127.0.0.1:1/embed
  Latency Distribution
     50%    1.50ms
     75%  900.00us
     90%    2.10ms
     99%    1.20s
  4000 requests in 8.00s, 1.2MB read
Requests/sec:    500.25
"""
    parsed = parse_wrk(output)
    assert parsed["requests_per_s"] == 500.25
    assert parsed["latency_ms"] == {"p50": 1.5, "p75": 0.9, "p90": 2.1, "p99": 1200.0}
