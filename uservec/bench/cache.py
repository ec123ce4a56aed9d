"""Cache: client latency of a hit vs a miss over HTTP, in-process LRU and Redis.

Each sequence is sent twice in a row at concurrency 1 (a miss, then a hit of the same sequence),
so hits and misses alternate and share the machine's load. The server's own ``Server-Timing``
total is reported beside the client latency. Redis: the shared server at 127.0.0.1:6379 under a
key prefix of this run's own (entries expire after two minutes); skipped with a note when absent.
"""

from __future__ import annotations

import logging
import socket
import uuid
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from uservec.bench.common import bundle_items, ratio, stream_seed
from uservec.bench.server import ServerProcess, run_load
from uservec.contract.manifest import read_manifest

logger = logging.getLogger(__name__)

SHARED_REDIS = ("127.0.0.1", 6379)
TARGET_HIT_P50_MS = 2.0


def redis_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _pairs(server: ServerProcess, bundle: Path, workdir: Path, pairs: int,
           seed: int) -> dict[str, Any]:
    load = run_load(server, bundle_items(bundle), workdir, concurrency=1, requests=2 * pairs,
                    warmup=10, length=read_manifest(bundle).model.max_len, pairs=True, seed=seed)
    hit, miss = load["hit_latency_ms"], load["miss_latency_ms"]
    return {
        "pairs": pairs,
        "failed": load["failed"],
        "hit_share": load["cached_share"],
        "hit_ms": hit,
        "miss_ms": miss,
        "hit_server_ms": load["hit_server_ms"],
        "miss_server_ms": load["miss_server_ms"],
        "miss_over_hit_p50": ratio(miss.get("p50", 0.0), hit.get("p50", 0.0)),
        "target_hit_p50_met": hit.get("p50", float("inf")) < TARGET_HIT_P50_MS,
    }


def run_cache(bundle: Path, workdir: Path, quick: bool, seed: int) -> dict[str, Any]:
    pairs = 20 if quick else 300
    result: dict[str, Any] = {"target_hit_p50_ms": TARGET_HIT_P50_MS}
    backends = tqdm(("memory", "redis"), desc="cache", leave=False)
    for backend in backends:
        settings: dict[str, Any] = {"cache_size": 10_000}
        if backend == "redis":
            if not redis_answers(*SHARED_REDIS):
                result["redis"] = {"skipped": "no Redis answers on 127.0.0.1:6379"}
                continue
            settings.update(redis_url="redis://127.0.0.1:6379/0", redis_ttl_s=120,
                            cache_key_prefix=f"uservec-bench-{uuid.uuid4().hex[:8]}")
        with ServerProcess(bundle, workdir / f"server-cache-{backend}.log", **settings) as server:
            result[backend] = _pairs(server, bundle, workdir, pairs,
                                     stream_seed(seed, "cache", backend))
    return result
