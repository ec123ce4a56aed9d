"""HTTP load generator, run as its own process: ``python -m training.bench.loadgen SPEC OUT``.

A separate process (pinned to its own core by the caller) so that generating load does not steal
the server's CPU or the GIL of the process that measures. It speaks minimal HTTP/1.1 over asyncio
streams, one keep-alive connection per concurrent worker: a full client library (httpx) costs more
CPU per request than the server's own request handling, and would measure itself.

SPEC (JSON): host, port, concurrency, requests, warmup, items ([domain, raw id] pairs), length
(events per user), seed, and optionally targets ([path, extra body fields] used round-robin),
repeat_pool/repeat_share (share of requests that resend one of a pool of sequences: cache hits),
pairs (every sequence sent twice in a row: a miss then a hit), max_seconds, timeout_s, timeline,
samples (every latency, for percentiles over several loads).
OUT receives the result JSON: counts by status, connection errors, requests/s, client latency and
server-side latency (``Server-Timing: total``) split by whether the answer came from the cache.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_SERVER_TOTAL = re.compile(rb"total;dur=([0-9.]+)")
_CACHED = b'"cached":true'
#: seed stream of each kind of reused sequence (fresh ones are seeded by request index)
_STREAMS = {"pair": 1 << 40, "pool": 1 << 41}


@dataclass
class Spec:
    host: str
    port: int
    items: list[tuple[str, str]]
    concurrency: int = 1
    requests: int = 100
    warmup: int = 0
    length: int = 100
    seed: int = 0
    targets: list[tuple[str, dict[str, Any]]] = field(default_factory=lambda: [("/embed", {})])
    repeat_pool: int = 0
    repeat_share: float = 0.0
    pairs: bool = False
    max_seconds: float = 600.0
    timeout_s: float = 30.0
    timeline: bool = False
    #: also return every request's latency and server time (percentiles over merged loads)
    samples: bool = False

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Spec:
        data = dict(data)
        data["items"] = [tuple(pair) for pair in data["items"]]
        if "targets" in data:
            data["targets"] = [(path, dict(extra)) for path, extra in data["targets"]]
        return cls(**data)


@dataclass
class Reply:
    status: int
    body: bytes
    server_ms: float | None


class Connection:
    """One keep-alive HTTP/1.1 connection; reopened after the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port,
                                                                 limit=1 << 22)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes) -> Reply:
        if self.writer is None:
            await self._open()
        assert self.reader is not None and self.writer is not None
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        self.writer.write(head.encode("latin-1") + body)
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            payload = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            payload = await self._chunked()
        else:
            payload = await self.reader.read()
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        match = _SERVER_TOTAL.search(headers.get("server-timing", "").encode())
        return Reply(status, payload, float(match.group(1)) if match else None)

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts: list[bytes] = []
        while True:
            size = int((await self.reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await self.reader.readline()
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readline()


def user_body(rng: np.random.Generator, items: list[tuple[str, str]], length: int,
              extra: dict[str, Any]) -> bytes:
    """A one-user request body of ``length`` random events."""
    picks = rng.integers(0, len(items), size=length)
    events = [{"item_id": items[p][1], "domain": items[p][0]} for p in picks.tolist()]
    return json.dumps({"users": [{"events": events}], **extra}, separators=(",", ":")).encode()


class Bodies:
    """Deterministic request bodies by request index (fresh, pooled or paired sequences)."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self._pool: dict[tuple[int, int], bytes] = {}

    def body(self, index: int) -> tuple[str, bytes]:
        spec = self.spec
        path, extra = spec.targets[index % len(spec.targets)]
        target = index % len(spec.targets)
        if spec.pairs:
            key = (target, index // 2)
            if key not in self._pool:
                self._pool = {key: self._make(("pair", index // 2), extra)}
            return path, self._pool[key]
        chooser = np.random.default_rng([spec.seed, index])
        if spec.repeat_pool and chooser.random() < spec.repeat_share:
            slot = int(chooser.integers(spec.repeat_pool))
            key = (target, slot)
            if key not in self._pool:
                self._pool[key] = self._make(("pool", slot), extra)
            return path, self._pool[key]
        return path, user_body(chooser, spec.items, spec.length, extra)

    def _make(self, tag: tuple[str, int], extra: dict[str, Any]) -> bytes:
        rng = np.random.default_rng([self.spec.seed, _STREAMS[tag[0]], tag[1]])
        return user_body(rng, self.spec.items, self.spec.length, extra)


@dataclass
class Record:
    end: float  # wall clock (time.time) when the reply arrived
    latency: float
    status: int  # 0 = connection error or timeout
    cached: bool
    server_ms: float | None


async def _worker(spec: Spec, bodies: Bodies, counter: list[int], stop_at: int, deadline: float,
                  records: list[Record], errors: list[str], keep: bool) -> None:
    conn = Connection(spec.host, spec.port)
    try:
        while True:
            index = counter[0]
            if index >= stop_at or time.monotonic() > deadline:
                return
            counter[0] += 1
            path, body = bodies.body(index)
            start = time.perf_counter()
            try:
                reply = await asyncio.wait_for(conn.request("POST", path, body), spec.timeout_s)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    TimeoutError, ValueError, IndexError) as exc:
                conn.close()
                if keep:
                    records.append(Record(time.time(), time.perf_counter() - start, 0, False, None))
                    if len(errors) < 10:
                        errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if keep:
                records.append(Record(time.time(), time.perf_counter() - start, reply.status,
                                      _CACHED in reply.body, reply.server_ms))
    finally:
        conn.close()


async def _phase(spec: Spec, bodies: Bodies, first: int, count: int, keep: bool,
                 records: list[Record], errors: list[str]) -> float:
    counter = [first]
    deadline = time.monotonic() + spec.max_seconds
    start = time.perf_counter()
    await asyncio.gather(*(
        _worker(spec, bodies, counter, first + count, deadline, records, errors, keep)
        for _ in range(spec.concurrency)
    ))
    return time.perf_counter() - start


def _latency(records: list[Record]) -> dict[str, float]:
    values = np.array([r.latency for r in records]) * 1000.0
    if values.size == 0:
        return {}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(values.mean())}


def _server(records: list[Record]) -> dict[str, float]:
    values = np.array([r.server_ms for r in records if r.server_ms is not None])
    if values.size == 0:
        return {}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(values.mean())}


async def run(spec: Spec) -> dict[str, Any]:
    """Warm up, then send ``spec.requests`` requests; returns the result document."""
    bodies = Bodies(spec)
    errors: list[str] = []
    records: list[Record] = []
    if spec.warmup:
        await _phase(spec, bodies, 0, spec.warmup, False, [], errors)
    started = time.time()
    seconds = await _phase(spec, bodies, spec.warmup, spec.requests, True, records, errors)
    status: dict[str, int] = {}
    for record in records:
        status[str(record.status)] = status.get(str(record.status), 0) + 1
    ok = [r for r in records if 200 <= r.status < 300]
    hits = [r for r in ok if r.cached]
    misses = [r for r in ok if not r.cached]
    result: dict[str, Any] = {
        "concurrency": spec.concurrency,
        "requests": len(records),
        "ok": len(ok),
        "failed": len(records) - len(ok),
        "status": status,
        "connection_errors": status.get("0", 0),
        "error_samples": errors,
        "seconds": seconds,
        "started": started,
        "requests_per_s": len(ok) / seconds if seconds > 0 else 0.0,
        "latency_ms": _latency(ok),
        "cached_share": len(hits) / len(ok) if ok else 0.0,
        "hit_latency_ms": _latency(hits),
        "miss_latency_ms": _latency(misses),
        "hit_server_ms": _server(hits),
        "miss_server_ms": _server(misses),
    }
    if spec.samples:
        result["samples"] = {"latency_ms": [r.latency * 1000.0 for r in ok],
                             "server_ms": [r.server_ms for r in ok if r.server_ms is not None]}
    if spec.timeline:
        result["timeline"] = [[r.end, round(r.latency, 6), r.status, int(r.cached)]
                              for r in records]
    return result


def main(argv: list[str]) -> int:
    spec = Spec.from_json(json.loads(Path(argv[0]).read_text()))
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(spec))
    else:
        result = uvloop.run(run(spec))
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
