"""Serving overhead and micro-batching: HTTP ``/embed`` throughput vs the raw onnxruntime engine.

Reference: the bundle's own graph in this process, one intra-op thread, pinned to the server core,
batches of full-length random sequences (batch 1 and each concurrency level). Measured: a real
uvicorn server subprocess on the same core (one onnxruntime thread, one inference thread), loaded
by a separate load-generator process on the other core at each concurrency, every request one user
with a fresh random full-length sequence (a cache miss). The raw engine is timed before and after
the HTTP runs and the mean is the reference, so drift of the shared machine shows as ``raw_drift``.
Each concurrency runs twice: micro-batching on and off.
"""

from __future__ import annotations

import itertools
import logging
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
from uservec.contract.manifest import read_manifest

logger = logging.getLogger(__name__)

#: server micro-batching settings of the benchmark (the service defaults)
MAX_BATCH_SIZE = 64
MAX_BATCH_WAIT_MS = 2.0
#: HTTP throughput at concurrency 8 should reach this share of the raw engine's
TARGET_RATIO_AT_8 = 0.7


def core_layout() -> str:
    """How the two cores were shared, for the report."""
    if not can_pin():
        return "no core pinning (fewer than 2 usable cores); server and client share the CPU"
    return (f"server (uvicorn + onnxruntime, 1 intra-op thread, 1 inference thread) and the "
            f"in-process raw-engine reference pinned to core {SERVER_CORE}; load generator "
            f"(separate process, asyncio HTTP/1.1 keep-alive) pinned to core {CLIENT_CORE}; the "
            f"machine's other tenants were not excluded")


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
                    warmup=max(4, concurrency * 2), length=length, seed=seed)
    load["batch_size"] = mean_batch_size(before, server.metrics())
    return load


def _merge(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """One level's figures from its chunks: requests/s over the summed measured time."""
    seconds = sum(c["seconds"] for c in chunks)
    ok = sum(c["ok"] for c in chunks)
    weights = np.array([c["ok"] for c in chunks], dtype=float)
    return {
        "requests": sum(c["requests"] for c in chunks),
        "failed": sum(c["failed"] for c in chunks),
        "requests_per_s": ok / seconds if seconds else 0.0,
        # chunk percentiles averaged by request count (each chunk's distribution is similar)
        "latency_ms": {k: float(np.average([c["latency_ms"][k] for c in chunks],
                                           weights=weights)) for k in ("p50", "p95", "p99")},
        "server_ms": {k: float(np.average([c["miss_server_ms"].get(k, np.nan) for c in chunks],
                                          weights=weights)) for k in ("p50", "p95", "p99")},
        "cached_share": float(np.average([c["cached_share"] for c in chunks], weights=weights)),
        "mean_batch_size": float(np.nanmean([c["batch_size"] for c in chunks])),
    }


@dataclass
class _Rounds:
    """What the interleaved rounds measured."""

    #: batch size -> the raw engine's sequences/s in every round
    raw: dict[int, list[float]] = field(default_factory=dict)
    #: (concurrency, batch) -> the raw figures of that level's own rounds: its reference
    raw_level: dict[tuple[int, int], list[float]] = field(default_factory=dict)
    #: (mode, concurrency) -> one load chunk per round
    chunks: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)


def _run_rounds(servers: dict[str, ServerProcess], bundle: Path, workdir: Path, levels: list[int],
                rounds: int, per_round: int, raw_seconds: float, seed: int) -> _Rounds:
    """Each round at each level: the raw engine, then one server, then the other (the order
    alternates between rounds)."""
    manifest = read_manifest(bundle)
    length = manifest.model.max_len
    items = bundle_items(bundle)
    model_path = bundle / manifest.model.file
    out = _Rounds()
    steps = tqdm(total=len(levels) * rounds, desc="serving", leave=False)
    try:
        for server in servers.values():
            server.start()
        for concurrency in levels:
            for round_ in range(rounds):
                tag = (str(concurrency), str(round_))
                raw = raw_engine(model_path, len(items) + 2, length,
                                 sorted({1, min(concurrency, MAX_BATCH_SIZE)}), raw_seconds,
                                 stream_seed(seed, "raw", *tag))
                for batch, value in raw.items():
                    out.raw.setdefault(batch, []).append(value)
                    out.raw_level.setdefault((concurrency, batch), []).append(value)
                order = list(servers.items())
                for mode, server in order if round_ % 2 == 0 else order[::-1]:
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
    """One concurrency level: batching on and off against the raw engine of its own rounds."""
    batch = min(concurrency, MAX_BATCH_SIZE)
    on = _merge(measured.chunks[("batching_on", concurrency)])
    off = _merge(measured.chunks[("batching_off", concurrency)])
    best = max(on["requests_per_s"], off["requests_per_s"])
    raw_1 = float(np.mean(measured.raw_level[(concurrency, 1)]))
    raw_c = float(np.mean(measured.raw_level[(concurrency, batch)]))
    return {
        "concurrency": concurrency,
        "raw_batch1_seq_s": raw_1,
        "raw_batchc_seq_s": raw_c,
        "batching_on": on,
        "batching_off": off,
        "best_batching": "on" if on["requests_per_s"] >= off["requests_per_s"] else "off",
        "batching_speedup": ratio(on["requests_per_s"], off["requests_per_s"]),
        "ratio_vs_raw_batch1": ratio(best, raw_1),
        "ratio_vs_raw_batchc": ratio(best, raw_c),
    }


def run_serving(bundle: Path, workdir: Path, quick: bool, seed: int) -> dict[str, Any]:
    """Raw engine vs HTTP at each concurrency, micro-batching on and off, in interleaved rounds.

    Both servers (batching on, off) stay up, idle while the other is loaded; each round times the
    raw engine, then loads one server, then the other, so slow phases of the shared machine hit
    reference and measurement alike.
    """
    levels = [1, 4] if quick else [1, 8, 32]
    rounds = 1 if quick else 4
    per_round = 30 if quick else 250
    modes = {"batching_on": True, "batching_off": False}
    servers = {
        mode: ServerProcess(bundle, workdir / f"server-{mode}.log", batching_enabled=on,
                            max_batch_size=MAX_BATCH_SIZE, max_batch_wait_ms=MAX_BATCH_WAIT_MS,
                            cache_size=10_000)
        for mode, on in modes.items()
    }
    measured = _run_rounds(servers, bundle, workdir, levels, rounds, per_round,
                           0.2 if quick else 1.0, seed)
    rows = [_level_row(measured, concurrency) for concurrency in levels]
    at8 = next((r for r in rows if r["concurrency"] == 8), rows[-1])
    return {
        "cores": core_layout(),
        "sequence_length": read_manifest(bundle).model.max_len,
        "requests_per_level": rounds * per_round,
        "rounds": rounds,
        "max_batch_size": MAX_BATCH_SIZE,
        "max_batch_wait_ms": MAX_BATCH_WAIT_MS,
        "raw_engine_seq_s": {str(b): float(np.mean(v)) for b, v in sorted(measured.raw.items())},
        "raw_spread": {str(b): ratio(max(v), min(v)) for b, v in sorted(measured.raw.items())},
        "levels": rows,
        "target": {"concurrency": at8["concurrency"],
                   "ratio_vs_raw_batch1": at8["ratio_vs_raw_batch1"],
                   "ratio_vs_raw_batchc": at8["ratio_vs_raw_batchc"],
                   "goal": TARGET_RATIO_AT_8,
                   "met": at8["ratio_vs_raw_batchc"] >= TARGET_RATIO_AT_8},
    }
