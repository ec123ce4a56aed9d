"""Robustness of a live server: bounded load, faults during load, fuzzing, hostile inputs.

* load: N requests at concurrency 32 over /embed, /predict-profile and /recommend (half of them
  resend one of a pool of sequences: cache hits), zero failed requests; the server's RSS is sampled
  and the mean of the last quarter of the run minus the mean of the first must stay under a bound.
* faults: a private redis-server (own free port; the shared 6379 server is never touched) is killed
  and restarted under load: zero 5xx, and the hit rate after the restart returns to what it was;
  hot reloads (alternating two bundle copies) and a corrupt bundle on reload under load: zero
  failed requests, the corrupt one refused (409) while the old bundle keeps serving.
* fuzzing: ``schemathesis run --checks all`` (a separate process) against the server's own
  OpenAPI document: 0 failures.
* hostile inputs: :mod:`uservec.bench.hostile`, sent over a real socket, one row each: 0 5xx.
* slow clients: 256 stalled connections while ordinary requests keep succeeding (p99 < 1 s) and
  readiness tells the truth, then readiness under in-flight saturation.
All traffic goes to 127.0.0.1, bounded in count and time. The load and fault checks live here;
fuzzing in :mod:`uservec.bench.fuzzing`, hostile inputs over a socket in
:mod:`uservec.bench.hostile_live`, slow clients in :mod:`uservec.bench.slow_clients`.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from uservec.bench.common import bundle_items, free_port, stream_seed
from uservec.bench.fuzzing import demo_bundle, fuzz
from uservec.bench.hostile import ADMIN, ADMIN_KEY
from uservec.bench.hostile_live import hostile
from uservec.bench.server import HOST, Load, ServerProcess, error_code, load_spec, metric_total
from uservec.bench.slow_clients import slow_sockets

logger = logging.getLogger(__name__)

#: RSS growth allowed between the first and the last quarter of the load test
RSS_BOUND_MB = 32.0
#: cache entries during the load test: small, so the cache is full within the first quarter and
#: later growth is not the cache filling up
LOAD_CACHE_SIZE = 1000
TARGETS = [("/embed", {}), ("/predict-profile", {}), ("/recommend", {"domain": "games", "k": 10})]


class RssSampler:
    """Samples a process's RSS every ``interval_s`` in a background thread."""

    def __init__(self, server: ServerProcess, interval_s: float = 0.1) -> None:
        self.server, self.interval_s = server, interval_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self.server.rss()))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def quarter_growth(samples: list[tuple[float, int]], start: float, end: float) -> dict[str, float]:
    """Mean RSS (MB) in the first and last quarter of [start, end] and their difference.

    A quarter shorter than the sampling interval holds no sample: the one nearest to its middle
    stands in.
    """
    if not samples:
        return {"first_quarter_mb": float("nan"), "last_quarter_mb": float("nan"),
                "growth_mb": float("nan")}
    span = end - start

    def mean_rss(low: float, high: float) -> float:
        inside = [rss for t, rss in samples if low <= t <= high]
        if not inside:
            middle = (low + high) / 2
            inside = [min(samples, key=lambda s: abs(s[0] - middle))[1]]
        return float(np.mean(inside)) / 2**20

    a, b = mean_rss(start, start + span / 4), mean_rss(end - span / 4, end)
    return {"first_quarter_mb": a, "last_quarter_mb": b, "growth_mb": b - a}


def load_test(bundle: Path, workdir: Path, requests: int, seed: int) -> dict[str, Any]:
    items = bundle_items(bundle)
    with ServerProcess(bundle, workdir / "server-load.log", cache_size=LOAD_CACHE_SIZE) as server:
        spec = load_spec(server, items, concurrency=32, requests=requests, warmup=64,
                         targets=TARGETS, repeat_pool=500, repeat_share=0.5,
                         length=int(max_len_of(bundle)), seed=stream_seed(seed, "load"),
                         timeline=True)
        with RssSampler(server) as sampler:
            result = Load(spec, workdir).result()
        timeline = result.pop("timeline")
        start, end = result["started"], max(row[0] for row in timeline)
        rss = quarter_growth(sampler.samples, start, end)
        five = sum(n for code, n in result["status"].items() if code.startswith("5"))
    return {
        "requests": result["requests"], "concurrency": 32, "failed": result["failed"],
        "server_errors": five, "status": result["status"],
        "requests_per_s": result["requests_per_s"], "latency_ms": result["latency_ms"],
        "cached_share": result["cached_share"], "rss": rss, "rss_bound_mb": RSS_BOUND_MB,
        "cache_size": LOAD_CACHE_SIZE,
        "passed": result["failed"] == 0 and rss["growth_mb"] < RSS_BOUND_MB,
    }


def max_len_of(bundle: Path) -> int:
    from uservec.contract.manifest import read_manifest

    return read_manifest(bundle).model.max_len


class OwnRedis:
    """A private redis-server on a free port (never the shared one)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def answers(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.answers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


def _window(timeline: list[list[float]], start: float, end: float) -> dict[str, Any]:
    rows = [r for r in timeline if start <= r[0] < end]
    ok = [r for r in rows if 200 <= r[2] < 300]
    return {"requests": len(rows), "failed": len(rows) - len(ok),
            "server_errors": sum(1 for r in rows if r[2] >= 500),
            "hit_rate": float(np.mean([r[3] for r in ok])) if ok else float("nan")}


def _served(server: ServerProcess) -> float:
    """POSTs the server has answered so far (the load's; polling GET /metrics is not counted)."""
    return metric_total(server.metrics(), "uservec_request_duration_seconds_count", method="POST")


def _wait_for_requests(server: ServerProcess, total: float, at_least_s: float = 0.0,
                       timeout_s: float = 60.0) -> None:
    """Sleep ``at_least_s``, then until the server has answered ``total`` requests: each phase of
    a fault benchmark must hold traffic, or its hit rate is 0/0."""
    deadline = time.time() + timeout_s
    time.sleep(at_least_s)
    while _served(server) < total and time.time() < deadline:
        time.sleep(0.05)


def redis_fault(bundle: Path, workdir: Path, seconds: float, seed: int) -> dict[str, Any]:
    """Kill the server's Redis a third into the load, restart it at two thirds."""
    if shutil.which("redis-server") is None:
        return {"skipped": "redis-server binary not installed"}
    redis = OwnRedis()
    redis.start()
    try:
        with ServerProcess(bundle, workdir / "server-redis.log", redis_url=redis.url,
                           redis_retry_interval_s=0.5) as server:
            spec = load_spec(server, bundle_items(bundle), concurrency=8, requests=10**7,
                             warmup=0, length=max_len_of(bundle), repeat_pool=200,
                             repeat_share=0.9, max_seconds=seconds,
                             seed=stream_seed(seed, "redis"), timeline=True)
            load = Load(spec, workdir)
            _wait_for_requests(server, 20)  # a loaded machine can take seconds to start the load
            start = time.time()
            time.sleep(seconds / 3)
            redis.kill()
            killed = time.time()
            _wait_for_requests(server, _served(server) + 20, at_least_s=seconds / 3)
            redis.start()
            restarted = time.time()
            result = load.result()
            errors = metric_total(server.metrics(), "uservec_cache_errors_total")
    finally:
        redis.kill()
    timeline = result["timeline"]
    # steady state: the second half of each phase (the first half refills the cache)
    before = _window(timeline, start + (killed - start) / 2, killed)
    during = _window(timeline, killed, restarted)
    after_start = restarted + (time.time() - restarted) / 2  # second half after the restart
    after = _window(timeline, after_start, time.time() + 1)
    recovered = after["hit_rate"] >= 0.8 * before["hit_rate"]
    return {"requests": result["requests"], "failed": result["failed"],
            "server_errors": sum(n for c, n in result["status"].items() if c.startswith("5")),
            "before_kill": before, "redis_down": during, "after_restart": after,
            "cache_errors_counted": errors, "hit_rate_recovered": recovered,
            "passed": result["failed"] == 0 and recovered}


def reload_fault(bundle: Path, workdir: Path, seconds: float, reloads: int,
                 seed: int) -> dict[str, Any]:
    """Hot reloads alternating two copies of the bundle, then a corrupt one, all under load."""
    copies = [workdir / "reload-a", workdir / "reload-b", workdir / "reload-corrupt"]
    for copy in copies:
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(bundle, copy)
    model = copies[2] / "model.onnx"
    model.write_bytes(model.read_bytes()[: max(1, model.stat().st_size // 3)])
    statuses: list[int] = []
    with ServerProcess(copies[0], workdir / "server-reload.log",
                       admin_api_keys=ADMIN_KEY) as server:
        spec = load_spec(server, bundle_items(bundle), concurrency=8, requests=10**7,
                         warmup=0, length=max_len_of(bundle), max_seconds=seconds,
                         seed=stream_seed(seed, "reload"))
        load = Load(spec, workdir)
        gap = seconds / (reloads + 2)
        for index in range(reloads):
            time.sleep(gap)
            status, _ = server.request("POST", "/admin/reload",
                                       {"bundle_path": str(copies[index % 2])}, timeout_s=60,
                                       headers=ADMIN)
            statuses.append(status)
        time.sleep(gap / 2)
        version_good = server.request("GET", "/health/ready")[1]
        corrupt_status, corrupt_body = server.request(
            "POST", "/admin/reload", {"bundle_path": str(copies[2])}, timeout_s=60,
            headers=ADMIN)
        ready_after = server.request("GET", "/health/ready")
        result = load.result()
    for copy in copies:
        shutil.rmtree(copy, ignore_errors=True)
    kept = ready_after[0] == 200 and ready_after[1] == version_good
    return {"requests": result["requests"], "failed": result["failed"],
            "reloads": len(statuses), "reload_statuses": statuses,
            "corrupt_reload_status": corrupt_status,
            "corrupt_reload_code": error_code(corrupt_body),
            "old_bundle_kept_serving": kept,
            "passed": (result["failed"] == 0 and all(s == 200 for s in statuses)
                       and corrupt_status == 409 and kept)}


def run_robustness(bundle: Path, fuzz_bundle: Path, workdir: Path, quick: bool,
                   seed: int) -> dict[str, Any]:
    """Every robustness check; ``fuzz_bundle`` is the bundle schemathesis is run against (the
    demo's, outside ``quick``)."""
    steps = tqdm(total=6, desc="robustness", leave=False)
    result: dict[str, Any] = {}
    result["load"] = load_test(bundle, workdir, 300 if quick else 20_000, seed)
    steps.update()
    result["redis_fault"] = redis_fault(bundle, workdir, 4.0 if quick else 15.0, seed)
    steps.update()
    result["reload_fault"] = reload_fault(bundle, workdir, 4.0 if quick else 12.0,
                                          2 if quick else 6, seed)
    steps.update()
    # outside quick: against the demo's own bundle (trained here), as a new user would
    fuzz_target = fuzz_bundle if quick else demo_bundle(workdir / "demo", seed)
    result["fuzz"] = fuzz(fuzz_target, workdir, 5 if quick else 200, seed,
                          120 if quick else 900)
    result["fuzz"]["bundle"] = "quick benchmark bundle" if quick else "demo"
    steps.update()
    result["hostile"] = hostile(bundle, workdir)
    steps.update()
    result["slow_sockets"] = slow_sockets(bundle, workdir, 256, 3.0 if quick else 12.0, seed)
    steps.update()
    steps.close()
    result["passed"] = all(part.get("passed", True) for part in result.values())
    return result
