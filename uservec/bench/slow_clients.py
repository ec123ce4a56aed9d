"""Slow clients: stalled connections held open while ordinary requests keep coming, then
readiness under in-flight saturation."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np

from uservec.bench.common import bundle_items
from uservec.bench.loadgen import Connection, user_body
from uservec.bench.server import HOST, ServerProcess, server_errors


async def _hold(port: int, stall: str, opened: list[float], closed: list[float],
                answers: dict[int, int], stop: asyncio.Event) -> None:
    """Keep one stalled request open, reconnecting whenever the server closes it (as an
    attacker would); record how long the server let each one hang."""
    head = "POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    partial = (head + "Content-Length: 1000\r\n\r\n{\"users\":" if stall == "body"
               else head)
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        start = time.monotonic()
        opened.append(start)
        writer.write(partial.encode())
        try:
            reading = asyncio.ensure_future(reader.read())
            stopping = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if reading in done:
                closed.append(time.monotonic() - start)
                answer = reading.result()
                status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
                answers[status] = answers.get(status, 0) + 1
            else:
                reading.cancel()
            stopping.cancel()
        except (OSError, ValueError, IndexError):
            closed.append(time.monotonic() - start)
        finally:
            writer.close()


async def _ordinary(port: int, items: list[tuple[str, str]], seconds: float,
                    latencies: list[float], statuses: dict[int, int], seed: int) -> None:
    """Ordinary requests, one after another, for ``seconds``."""
    rng = np.random.default_rng(seed)
    conn = Connection(HOST, port)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            body = user_body(rng, items, 8, {})
            start = time.perf_counter()
            try:
                reply = await asyncio.wait_for(conn.request("POST", "/embed", body), 10)
                status = reply.status
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                conn.close()
                status = 0
            latencies.append(time.perf_counter() - start)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        conn.close()


async def _readiness(port: int, seconds: float, statuses: dict[int, int]) -> None:
    conn = Connection(HOST, port)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                reply = await asyncio.wait_for(conn.request("GET", "/health/ready", b""), 10)
                status = reply.status
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                conn.close()
                status = 0
            statuses[status] = statuses.get(status, 0) + 1
            await asyncio.sleep(0.1)
    finally:
        conn.close()


async def _slow_run(port: int, items: list[tuple[str, str]], sockets: int, seconds: float,
                    workers: int, seed: int) -> dict[str, Any]:
    stop = asyncio.Event()
    opened: list[float] = []
    closed: list[float] = []
    answers: dict[int, int] = {}
    holders = [asyncio.ensure_future(_hold(port, "body" if i % 2 == 0 else "head", opened,
                                           closed, answers, stop)) for i in range(sockets)]
    await asyncio.sleep(0.5)  # every stalled socket is open before the measurement
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    ready: dict[int, int] = {}
    await asyncio.gather(
        *(_ordinary(port, items, seconds, latencies, statuses, seed + w) for w in range(workers)),
        _readiness(port, seconds, ready))
    stop.set()
    await asyncio.gather(*holders)
    values = np.array(latencies) * 1000.0
    return {"latency_ms": {"p50": float(np.percentile(values, 50)),
                           "p99": float(np.percentile(values, 99)),
                           "max": float(values.max())} if values.size else {},
            "requests": len(latencies), "status": {str(k): v for k, v in statuses.items()},
            "readiness": {str(k): v for k, v in ready.items()},
            "stalled_connections_opened": len(opened),
            "stalled_answers": {str(k): v for k, v in answers.items()},
            "stalled_held_s": {"mean": float(np.mean(closed)) if closed else None,
                               "max": float(np.max(closed)) if closed else None}}


async def _saturate(port: int, items: list[tuple[str, str]], seconds: float,
                    concurrency: int, seed: int) -> dict[str, Any]:
    """More concurrent requests than slots: some get 429, and readiness must say saturated."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    ready: dict[int, int] = {}
    await asyncio.gather(
        *(_ordinary(port, items, seconds, latencies, statuses, seed + w)
          for w in range(concurrency)),
        _readiness(port, seconds, ready))
    return {"requests": len(latencies), "status": {str(k): v for k, v in statuses.items()},
            "readiness": {str(k): v for k, v in ready.items()}}


def slow_sockets(bundle: Path, workdir: Path, sockets: int, seconds: float, seed: int,
                 deadline_s: float | None = None) -> dict[str, Any]:
    """``sockets`` stalled connections (half stop in the body, half in the head, reopened as
    soon as the server drops them) while ordinary requests keep coming: they must succeed with
    p99 under 1 s, readiness must stay 200 (the service does admit work), and each stalled
    connection must be dropped at its deadline (``deadline_s`` for head and body; None: the
    service's defaults). Then, on a server with 2 in-flight slots under 8 concurrent clients,
    readiness must turn 503 while requests are being refused."""
    from uservec.service.settings import Settings

    items = bundle_items(bundle)
    defaults = Settings()
    deadlines: dict[str, Any] = {"body_timeout_s": deadline_s or defaults.body_timeout_s,
                 "header_timeout_s": deadline_s or defaults.header_timeout_s}
    with ServerProcess(bundle, workdir / "server-slow.log", **deadlines) as server:
        result = asyncio.run(_slow_run(server.port, items, sockets, seconds, 4, seed))
        result["server_5xx"] = server_errors(server.metrics())
    result.update(sockets=sockets, seconds=seconds, **deadlines)
    with ServerProcess(bundle, workdir / "server-saturated.log", max_concurrent_requests=2,
                       max_batch_wait_ms=20, saturation_window_s=1.0) as server:
        saturated = asyncio.run(_saturate(server.port, items, max(2.0, seconds / 2), 8, seed))
    result["saturated"] = saturated
    ok = result["status"].get("200", 0)
    p99 = result["latency_ms"].get("p99", float("inf"))
    readiness_true = set(result["readiness"]) == {"200"}
    saturation_seen = (saturated["status"].get("429", 0) > 0
                       and saturated["readiness"].get("503", 0) > 0)
    dropped = (result["stalled_held_s"]["max"] or float("inf")) < deadlines["body_timeout_s"] + 2
    result["passed"] = (ok == result["requests"] > 0 and p99 < 1000.0 and readiness_true
                        and saturation_seen and dropped and not result["server_5xx"])
    return result
