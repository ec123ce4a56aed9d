"""The serving section of ``bench.md``: subgraph, batching and full-graph servers vs raw engines."""

from __future__ import annotations

from typing import Any

from uservec.bench.formatting import fmt as _fmt
from uservec.bench.formatting import pct as _pct
from uservec.bench.formatting import table


def serving_lines(s: dict[str, Any]) -> list[str]:
    if "full_graph" not in s["levels"][0]:
        return _serving_fused(s)
    out = [f"Cores: {s['cores']}.", "",
           f"Every request one user, a fresh random sequence of {s['sequence_length']} events "
           f"(cache miss); {s['requests_per_level']} requests per level and server in "
           f"{s['rounds']} rounds interleaved with the raw-engine references; server micro-batch "
           f"<= {s['max_batch_size']} rows, wait {s['max_batch_wait_ms']} ms (only while another "
           "run is in flight). `raw endpoint`: the graph /embed runs (same outputs); `full "
           "graph`: the server on the bundle without subgraphs. Latency: client p50 / p95 / p99 "
           "ms over every request of the rounds; req/s min / median / max over rounds.", ""]
    rows = []
    for r in s["levels"]:
        on, off, full = r["batching_on"], r["batching_off"], r["full_graph"]
        rounds = on["requests_per_s_rounds"]
        rows.append([r["concurrency"], r["raw_endpoint_batchc_seq_s"], r["raw_fused_batchc_seq_s"],
                     on["requests_per_s"],
                     " / ".join(_fmt(rounds[k], 0) for k in ("min", "median", "max")),
                     _pct(on["latency_ms"]), _pct(on["server_ms"]), on["mean_batch_size"],
                     off["requests_per_s"], full["requests_per_s"], _pct(full["latency_ms"]),
                     r["batching_speedup"], r["vs_full_graph"], r["ratio_vs_raw_batchc"],
                     on["failed"] + off["failed"] + full["failed"]])
    out += table(["c", "raw endpoint b=c seq/s", "raw fused b=c seq/s", "on req/s",
                  "on req/s rounds", "on latency", "on server ms", "on mean batch",
                  "off req/s", "full graph req/s", "full graph latency", "on / off",
                  "on / full graph", "on / raw endpoint", "failed"], rows)
    spread = ", ".join(f"{b}: {_fmt(v)}" for b, v in s["raw_spread"].items())
    out += [f"Raw-engine max/min over rounds (machine noise): {spread}.", ""]
    wrk = s.get("wrk") or {}
    if "skipped" in wrk:
        out += [f"wrk: {wrk['skipped']}.", ""]
    elif wrk:
        out += [f"Third-party client at concurrency {wrk['concurrency']}, same server (batching "
                f"on), {wrk['seconds']} s each: wrk ({wrk['wrk']['version']}) "
                f"{_fmt(wrk['wrk']['requests_per_s'], 0)} req/s, p50 / p99 "
                f"{_fmt(wrk['wrk']['latency_ms'].get('p50'))} / "
                f"{_fmt(wrk['wrk']['latency_ms'].get('p99'))} ms; our client "
                f"{_fmt(wrk['ours']['requests_per_s'], 0)} req/s, p50 / p99 "
                f"{_fmt(wrk['ours']['latency_ms'].get('p50'))} / "
                f"{_fmt(wrk['ours']['latency_ms'].get('p99'))} ms.", ""]
    return out


def _serving_fused(s: dict[str, Any]) -> list[str]:
    """The serving section of bench files written before per-endpoint graphs."""
    out = [f"Cores: {s['cores']}.", "",
           f"Every request one user, a fresh random sequence of {s['sequence_length']} events "
           f"(cache miss); {s['requests_per_level']} requests per level in {s['rounds']} rounds "
           f"interleaved with the raw-engine reference; server micro-batch "
           f"<= {s['max_batch_size']} rows, wait {s['max_batch_wait_ms']} ms. Latency: client "
           "p50 / p95 / p99 ms.", ""]
    rows = []
    for r in s["levels"]:
        on, off = r["batching_on"], r["batching_off"]
        rows.append([r["concurrency"], r["raw_batch1_seq_s"], r["raw_batchc_seq_s"],
                     on["requests_per_s"], _pct(on["latency_ms"]), on["mean_batch_size"],
                     off["requests_per_s"], _pct(off["latency_ms"]), r["best_batching"],
                     r["ratio_vs_raw_batch1"], r["ratio_vs_raw_batchc"],
                     on["failed"] + off["failed"]])
    out += table(["concurrency", "raw b=1 seq/s", "raw b=c seq/s", "HTTP batching on req/s",
                  "on latency", "on mean batch", "HTTP batching off req/s", "off latency",
                  "better", "best / raw b=1", "best / raw b=c", "failed"], rows)
    spread = ", ".join(f"b={b}: {_fmt(v)}" for b, v in s["raw_spread"].items())
    out += [f"Raw-engine max/min over rounds (machine noise): {spread}.", ""]
    return out
