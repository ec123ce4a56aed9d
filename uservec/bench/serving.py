"""Serving overhead, per-endpoint graphs and micro-batching: HTTP ``/embed`` vs the raw engine.

Reference: the graph ``/embed`` runs (the bundle's user-vector subgraph: the same outputs as the
endpoint) in this process, one intra-op thread, pinned to the server core, batches of full-length
random sequences (batch 1 and each concurrency level); the fused graph is timed beside it.
Measured: real uvicorn server subprocesses on the same core (one onnxruntime thread, one inference
thread), loaded by a separate load-generator process on the other core at each concurrency, every
request one user with a fresh random full-length sequence (a cache miss). Three servers, in
interleaved rounds: micro-batching on, off, and ``full_graph`` (batching on, the same bundle with
its subgraphs removed: the fused-graph path every endpoint took before). Percentiles are over the
merged samples of every round; requests/s is also given per round (min / median / max). Where
``wrk`` is installed it loads the batching-on server at concurrency 8 too, beside our client.
"""

from __future__ import annotations

import itertools
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from uservec.bench.common import (
    CLIENT_CORE,
    SERVER_CORE,
    bundle_items,
    can_pin,
    ort_session,
    pinned,
    random_sequences,
    ratio,
    stream_seed,
    throughput,
)
from uservec.bench.server import ServerProcess, mean_batch_size, run_load
from uservec.bench.wrk import run_wrk
from uservec.contract.manifest import MANIFEST_NAME, BundleManifest, read_manifest, sealed

logger = logging.getLogger(__name__)

#: server micro-batching settings of the benchmark (the service defaults)
MAX_BATCH_SIZE = 64
MAX_BATCH_WAIT_MS = 2.0
#: goals (issue 23): HTTP / raw engine of the same outputs at concurrency 8; /embed misses with
#: subgraphs vs the fused-graph path at concurrency 8; batching on / off at concurrency 1 and 8
TARGET_RATIO_AT_8 = 0.8
TARGET_VS_FULL_AT_8 = 1.8
TARGET_BATCHING = {1: 0.95, 8: 1.1}
MODES = ("batching_on", "batching_off", "full_graph")


def core_layout() -> str:
    """How the two cores were shared, for the report."""
    if not can_pin():
        return "no core pinning (fewer than 2 usable cores); server and client share the CPU"
    return (f"servers (uvicorn + onnxruntime, 1 intra-op thread, 1 inference thread) and the "
            f"in-process raw-engine reference pinned to core {SERVER_CORE}; load generator "
            f"(separate process, asyncio HTTP/1.1 keep-alive) pinned to core {CLIENT_CORE}; the "
            f"machine's other tenants were not excluded")


def full_graph_bundle(bundle: Path, out: Path) -> Path:
    """A copy of ``bundle`` without its per-output subgraphs: every request runs the fused graph
    (the path before subgraphs; benchmark only)."""
    manifest = read_manifest(bundle)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(bundle, out, ignore=shutil.ignore_patterns("graphs"))
    model = manifest.model.model_copy(update={"graphs": [], "nodes": None})
    files = {k: v for k, v in manifest.files.items() if not k.startswith("graphs/")}
    stripped = sealed(BundleManifest.model_validate(
        {**manifest.model_dump(), "model": model.model_dump(), "files": files,
         "manifest_sha256": None}))
    (out / MANIFEST_NAME).write_text(stripped.model_dump_json(indent=2), encoding="utf-8")
    return out


def endpoint_graph(bundle: Path) -> Path:
    """The graph ``/embed`` runs: the user-vector subgraph, else the fused graph."""
    manifest = read_manifest(bundle)
    own = [g.file for g in manifest.model.graphs if g.outputs == ["user_vector"]]
    return bundle / (own[0] if own else manifest.model.file)


def raw_engine(model_path: Path, vocab_size: int, length: int, batch_sizes: list[int],
               seconds: float, seed: int) -> dict[int, float]:
    """Sequences/s of the bare graph per batch size (one thread, pinned to the server core)."""
    session = ort_session(model_path, threads=1)
    name = session.get_inputs()[0].name
    rng = np.random.default_rng(seed)
    result = {}
    with pinned(SERVER_CORE):
        for batch in batch_sizes:
            feeds = itertools.cycle(
                [{name: random_sequences(rng, batch, length, vocab_size)} for _ in range(8)])
            result[batch] = throughput(partial(_run_next, session, feeds), batch, seconds)
    return result


def _run_next(session: Any, feeds: Iterator[dict[str, np.ndarray]]) -> Any:
    """One run of the graph on the next of the cycled batches."""
    return session.run(None, next(feeds))


def _load_chunk(server: ServerProcess, items: list[tuple[str, str]], workdir: Path,
                length: int, concurrency: int, requests: int, seed: int) -> dict[str, Any]:
    before = server.metrics()
    load = run_load(server, items, workdir, concurrency=concurrency, requests=requests,
                    warmup=max(4, concurrency * 2), length=length, seed=seed, samples=True)
    load["batch_size"] = mean_batch_size(before, server.metrics())
    return load


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    p50, p95, p99 = np.percentile(np.asarray(values, dtype=float), [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "n": len(values)}


def _merge(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """One level's figures from its rounds: requests/s over the summed measured time (and per
    round), percentiles over every request's sample."""
    seconds = sum(c["seconds"] for c in chunks)
    ok = sum(c["ok"] for c in chunks)
    per_round = [c["requests_per_s"] for c in chunks]
    return {
        "requests": sum(c["requests"] for c in chunks),
        "failed": sum(c["failed"] for c in chunks),
        "requests_per_s": ok / seconds if seconds else 0.0,
        "requests_per_s_rounds": {"min": min(per_round), "median": float(np.median(per_round)),
                                  "max": max(per_round)},
        "latency_ms": percentiles([v for c in chunks for v in c["samples"]["latency_ms"]]),
        "server_ms": percentiles([v for c in chunks for v in c["samples"]["server_ms"]]),
        "cached_share": float(np.average([c["cached_share"] for c in chunks],
                                         weights=[max(c["ok"], 1) for c in chunks])),
        "mean_batch_size": float(np.nanmean([c["batch_size"] for c in chunks])),
    }


@dataclass
class _Rounds:
    """What the interleaved rounds measured."""

    #: (graph, batch size) -> the raw engine's sequences/s in every round; graph "endpoint" is
    #: what /embed runs, "fused" the whole graph
    raw: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    #: (concurrency, graph, batch) -> the raw figures of that level's own rounds: its reference
    raw_level: dict[tuple[int, str, int], list[float]] = field(default_factory=dict)
    #: (mode, concurrency) -> one load chunk per round
    chunks: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)


def _raw_round(measured: _Rounds, bundle: Path, concurrency: int, seconds: float,
               seed: int) -> None:
    manifest = read_manifest(bundle)
    vocab_size = len(bundle_items(bundle)) + 2
    graphs = {"endpoint": endpoint_graph(bundle), "fused": bundle / manifest.model.file}
    for graph, path in graphs.items():
        raw = raw_engine(path, vocab_size, manifest.model.max_len,
                         sorted({1, min(concurrency, MAX_BATCH_SIZE)}), seconds,
                         stream_seed(seed, "raw", graph, str(concurrency)))
        for batch, value in raw.items():
            measured.raw.setdefault((graph, batch), []).append(value)
            measured.raw_level.setdefault((concurrency, graph, batch), []).append(value)


def _run_rounds(servers: dict[str, ServerProcess], bundle: Path, workdir: Path, levels: list[int],
                rounds: int, per_round: int, raw_seconds: float, seed: int) -> _Rounds:
    """Each round at each level: the raw engines, then each server (the order rotates between
    rounds)."""
    length = read_manifest(bundle).model.max_len
    items = bundle_items(bundle)
    out = _Rounds()
    steps = tqdm(total=len(levels) * rounds, desc="serving", leave=False)
    try:
        for server in servers.values():
            server.start()
        for concurrency in levels:
            for round_ in range(rounds):
                tag = (str(concurrency), str(round_))
                _raw_round(out, bundle, concurrency, raw_seconds,
                           stream_seed(seed, "raw", *tag))
                order = list(servers.items())
                shift = round_ % len(order)
                for mode, server in order[shift:] + order[:shift]:
                    out.chunks.setdefault((mode, concurrency), []).append(_load_chunk(
                        server, items, workdir, length, concurrency, per_round,
                        stream_seed(seed, mode, *tag)))
                steps.update()
    finally:
        for server in servers.values():
            server.stop()
        steps.close()
    return out


def _level_row(measured: _Rounds, concurrency: int) -> dict[str, Any]:
    """One concurrency level: each server against the raw engines of its own rounds."""
    batch = min(concurrency, MAX_BATCH_SIZE)
    row: dict[str, Any] = {"concurrency": concurrency}
    for mode in MODES:
        row[mode] = _merge(measured.chunks[(mode, concurrency)])
    for graph in ("endpoint", "fused"):
        row[f"raw_{graph}_batch1_seq_s"] = float(np.mean(measured.raw_level[(concurrency, graph,
                                                                              1)]))
        row[f"raw_{graph}_batchc_seq_s"] = float(np.mean(measured.raw_level[(concurrency, graph,
                                                                              batch)]))
    on, off = row["batching_on"]["requests_per_s"], row["batching_off"]["requests_per_s"]
    row["batching_speedup"] = ratio(on, off)
    row["vs_full_graph"] = ratio(on, row["full_graph"]["requests_per_s"])
    row["ratio_vs_raw_batch1"] = ratio(on, row["raw_endpoint_batch1_seq_s"])
    row["ratio_vs_raw_batchc"] = ratio(on, row["raw_endpoint_batchc_seq_s"])
    row["full_graph_ratio_vs_raw_fused_batchc"] = ratio(row["full_graph"]["requests_per_s"],
                                                        row["raw_fused_batchc_seq_s"])
    return row


def _targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The serving goals of issue 23, each measured side by side in this run."""
    by_level = {row["concurrency"]: row for row in rows}
    top = max(by_level)
    at8 = by_level.get(8, by_level[top])
    out = [
        {"name": f"/embed cache-miss req/s, subgraph vs full graph (c={at8['concurrency']})",
         "goal": f">= {TARGET_VS_FULL_AT_8}x", "measured": at8["vs_full_graph"],
         "met": at8["vs_full_graph"] >= TARGET_VS_FULL_AT_8},
        {"name": f"HTTP / raw engine, same outputs (c={at8['concurrency']})",
         "goal": f">= {TARGET_RATIO_AT_8}", "measured": at8["ratio_vs_raw_batchc"],
         "met": at8["ratio_vs_raw_batchc"] >= TARGET_RATIO_AT_8},
    ]
    for level, goal in TARGET_BATCHING.items():
        row = by_level.get(level, by_level[top] if level > 1 else by_level[min(by_level)])
        out.append({"name": f"batching on / off (c={row['concurrency']})", "goal": f">= {goal}x",
                    "measured": row["batching_speedup"], "met": row["batching_speedup"] >= goal})
    return out


def run_serving(bundle: Path, workdir: Path, quick: bool, seed: int) -> dict[str, Any]:
    """Raw engines vs HTTP at each concurrency; batching on, off, and the full-graph path, in
    interleaved rounds (the servers stay up, idle while another is loaded, so slow phases of the
    shared machine hit reference and measurement alike)."""
    levels = [1, 4] if quick else [1, 8]
    rounds = 1 if quick else 3
    per_round = 30 if quick else 300
    full = full_graph_bundle(bundle, workdir / "full-graph-bundle")
    settings: dict[str, Any] = {"max_batch_size": MAX_BATCH_SIZE,
                                "max_batch_wait_ms": MAX_BATCH_WAIT_MS, "cache_size": 10_000}
    servers = {
        "batching_on": ServerProcess(bundle, workdir / "server-batching_on.log",
                                     batching_enabled=True, **settings),
        "batching_off": ServerProcess(bundle, workdir / "server-batching_off.log",
                                      batching_enabled=False, **settings),
        "full_graph": ServerProcess(full, workdir / "server-full_graph.log",
                                    batching_enabled=True, **settings),
    }
    measured = _run_rounds(servers, bundle, workdir, levels, rounds, per_round,
                           0.2 if quick else 1.0, seed)
    rows = [_level_row(measured, concurrency) for concurrency in levels]
    targets = _targets(rows)
    return {
        "cores": core_layout(),
        "sequence_length": read_manifest(bundle).model.max_len,
        "requests_per_level": rounds * per_round,
        "rounds": rounds,
        "max_batch_size": MAX_BATCH_SIZE,
        "max_batch_wait_ms": MAX_BATCH_WAIT_MS,
        "raw_engine_seq_s": {f"{g}_batch{b}": float(np.mean(v))
                             for (g, b), v in sorted(measured.raw.items())},
        "raw_spread": {f"{g}_batch{b}": ratio(max(v), min(v))
                       for (g, b), v in sorted(measured.raw.items())},
        "levels": rows,
        "wrk": run_wrk(bundle, workdir, concurrency=max(levels), seconds=2 if quick else 8,
                       seed=seed),
        "targets": targets,
        "target": targets[1],
    }
