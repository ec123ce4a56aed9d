"""Cache: client latency of a hit vs a miss over HTTP, in-process LRU and Redis.

Each sequence is sent twice in a row at concurrency 1 (a miss, then a hit of the same sequence),
so hits and misses alternate and share the machine's load. The server's own ``Server-Timing``
total is reported beside the client latency. Redis: the shared server at 127.0.0.1:6379 under a
key prefix of this run's own (entries expire after two minutes); skipped with a note when absent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
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
    result: dict[str, Any] = {"target_hit_p50_ms": TARGET_HIT_P50_MS,
                              "hit_vs_bare": run_hit_vs_bare(bundle, quick, seed)}
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


#: issue 23: a cache hit's server time within this factor of a bare FastAPI endpoint
TARGET_HIT_VS_BARE = 2.0


async def _asgi_call_us(app: Any, body: bytes) -> tuple[float, bytes]:
    """One POST /embed straight into the ASGI app: microseconds until the response is sent."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/embed", "raw_path": b"/embed",
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 8000),
             "headers": [(b"host", b"svc"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    sent: list[bytes] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            sent.append(message.get("body", b""))

    start = time.perf_counter()
    await app(scope, receive, send)
    return (time.perf_counter() - start) * 1e6, b"".join(sent)


async def _hit_vs_bare(bundle: Path, calls: int, seed: int) -> dict[str, Any]:
    from fastapi import FastAPI, Response

    from uservec.service.app import create_app
    from uservec.service.settings import Settings

    items = bundle_items(bundle)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(items), size=read_manifest(bundle).model.max_len)
    body = json.dumps({"users": [{"events": [{"item_id": items[p][1], "domain": items[p][0]}
                                             for p in picks.tolist()]}]}).encode()
    service = create_app(Settings(bundle_path=bundle, reload_on_sighup=False, cache_size=1000))
    bare = FastAPI()
    stored: list[bytes] = []

    @bare.post("/embed")
    async def embed() -> Response:
        return Response(stored[0], media_type="application/json")

    times: dict[str, list[float]] = {"service": [], "bare": []}
    async with service.router.lifespan_context(service):
        stored.append((await _asgi_call_us(service, body))[1])  # the miss; then every call hits
        assert b'"cached":true' in (await _asgi_call_us(service, body))[1]
        for _ in range(calls):
            for name, app in (("service", service), ("bare", bare)):
                times[name].append((await _asgi_call_us(app, body))[0])
    return {name: {k: float(np.percentile(v, q)) for k, q in (("p50", 50), ("p95", 95))}
            for name, v in times.items()}


def run_hit_vs_bare(bundle: Path, quick: bool, seed: int) -> dict[str, Any]:
    """A cache hit's time inside the service's ASGI app vs a bare FastAPI endpoint returning the
    same JSON from memory, calls interleaved, in this process (no HTTP, no client: only what the
    server does). The access log is off for both (it writes a line per request)."""
    access = logging.getLogger("uservec.access")
    level = access.level
    access.setLevel(logging.WARNING)
    try:
        measured = asyncio.run(_hit_vs_bare(bundle, 200 if quick else 3000, seed))
    finally:
        access.setLevel(level)
    ratio_p50 = ratio(measured["service"]["p50"], measured["bare"]["p50"])
    return {"service_us": measured["service"], "bare_us": measured["bare"],
            "ratio_p50": ratio_p50, "goal": TARGET_HIT_VS_BARE,
            "met": ratio_p50 <= TARGET_HIT_VS_BARE, "access_log": "off for both"}
