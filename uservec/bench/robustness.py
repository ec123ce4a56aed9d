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
All traffic goes to 127.0.0.1, bounded in count and time.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from uservec.bench.common import bundle_items, free_port, stream_seed
from uservec.bench.hostile import (
    ADMIN,
    ADMIN_KEY,
    SERVER_SETTINGS,
    HostileCase,
    check_answer,
    hostile_cases,
)
from uservec.bench.loadgen import Connection, user_body
from uservec.bench.server import HOST, Load, ServerProcess, load_spec, metric_total

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
                         length=int(_max_len(bundle)), seed=stream_seed(seed, "load"),
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


def _max_len(bundle: Path) -> int:
    from uservec.contract.manifest import read_manifest

    return read_manifest(bundle).model.max_len


# --- faults
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
                             warmup=0, length=_max_len(bundle), repeat_pool=200,
                             repeat_share=0.9, max_seconds=seconds,
                             seed=stream_seed(seed, "redis"), timeline=True)
            load = Load(spec, workdir)
            start = time.time()
            time.sleep(seconds / 3)
            redis.kill()
            killed = time.time()
            time.sleep(seconds / 3)
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
                         warmup=0, length=_max_len(bundle), max_seconds=seconds,
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
            "corrupt_reload_code": _error_code(corrupt_body),
            "old_bundle_kept_serving": kept,
            "passed": (result["failed"] == 0 and all(s == 200 for s in statuses)
                       and corrupt_status == 409 and kept)}


def _error_code(body: bytes) -> str | None:
    import json

    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


# --- fuzzing and hostile inputs
def demo_bundle(workdir: Path, seed: int = 0) -> Path:
    """Train and export the shipped demo config (what `uservec demo` serves), ~15 s."""
    from importlib.resources import files

    from uservec.demo import run_demo
    from uservec.training.config import load_config

    config = Path(str(files("uservec.configs") / "demo.toml"))
    cfg = load_config(config, ["export.enabled=true", f"seed={seed}"])
    return run_demo(cfg, workdir).path


def server_errors(samples: dict[str, float]) -> int:
    """5xx answers the server counted, from its request histogram."""
    return int(sum(v for k, v in samples.items()
                   if k.startswith("uservec_request_duration_seconds_count")
                   and 'status="5' in k))


def fuzz(bundle: Path, workdir: Path, max_examples: int, seed: int,
         max_seconds: int) -> dict[str, Any]:
    """``schemathesis run --checks all`` against a live server: every operation of the document
    it publishes, ``max_examples`` cases each (examples, coverage and fuzzing phases).

    The server has an admin key the fuzzer does not know: a reload it managed would show in
    ``reloads_by_fuzzer``.
    """
    exe = Path(sys.executable).with_name("schemathesis")
    if not exe.exists():
        return {"skipped": "schemathesis is not installed (pip install schemathesis)"}
    junit = workdir / "schemathesis-junit.xml"
    junit.unlink(missing_ok=True)
    with ServerProcess(bundle, workdir / "server-fuzz.log", max_batch_wait_ms=0.5,
                       admin_api_keys=ADMIN_KEY) as server:
        command = [str(exe), "run", f"http://{HOST}:{server.port}/openapi.json",
                   "--checks", "all", "--max-examples", str(max_examples), "--seed", str(seed),
                   "--workers", "1", "--no-color", "--generation-database", "none",
                   "--report", "junit", "--report-junit-path", str(junit)]
        # no --max-time: with it schemathesis repeats fuzzing until the budget is spent
        try:
            completed = subprocess.run(command, capture_output=True, text=True,
                                       timeout=max_seconds, check=False)
        except subprocess.TimeoutExpired:
            return {"operations": 0, "max_examples_per_operation": max_examples,
                    "checks": "all", "failures": [f"schemathesis did not finish within "
                                                  f"{max_seconds} s"],
                    "unique_failures": None, "server_5xx_seen": 0, "reloads_by_fuzzer": 0,
                    "exit_code": None, "summary": "timed out", "passed": False}
        samples = server.metrics()
        fives = server_errors(samples)
        reloads = metric_total(samples, "uservec_bundle_reloads_total")
    (workdir / "schemathesis.log").write_text(completed.stdout + completed.stderr)
    operations, failures = _junit(junit)
    unique = _unique_failures(completed.stdout)
    return {"operations": operations, "max_examples_per_operation": max_examples,
            "checks": "all", "generated": _generated(completed.stdout), "failures": failures,
            "unique_failures": unique, "server_5xx_seen": int(fives),
            "reloads_by_fuzzer": int(reloads), "exit_code": completed.returncode,
            "summary": _summary_line(completed.stdout),
            "passed": (completed.returncode == 0 and not failures and not unique and fives == 0
                       and reloads == 0)}


def _unique_failures(stdout: str) -> int:
    """schemathesis's own count ("N found M unique failures"); 0 when it found none."""
    match = re.search(r"found (\d+) unique failures?", stdout)
    return int(match.group(1)) if match else 0


def _generated(stdout: str) -> int | None:
    match = re.search(r"(\d+) generated", stdout)
    return int(match.group(1)) if match else None


def _junit(path: Path) -> tuple[int, list[str]]:
    if not path.exists():
        return 0, ["no junit report written"]
    root = ET.parse(path).getroot()
    cases = list(root.iter("testcase"))
    failures = []
    for case in cases:
        for problem in [*case.findall("failure"), *case.findall("error")]:
            text = (problem.get("message") or problem.text or "").strip().splitlines()
            failures.append(f"{case.get('name')}: {text[0] if text else 'failed'}"[:300])
    return len(cases), failures


def _summary_line(stdout: str) -> str:
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    return next((line for line in reversed(lines) if "passed" in line or "failed" in line), "")


def _stalled(port: int, case: HostileCase, timeout_s: float) -> tuple[int, bytes]:
    """Send part of a request (its head, or its head and part of its body), then nothing: the
    server's deadline must answer (408) and close."""
    with socket.create_connection((HOST, port), timeout=timeout_s) as sock:
        if case.stall == "head":
            sock.sendall(case.body)
        else:
            request_head = (f"{case.method} {case.path} HTTP/1.1\r\nHost: {HOST}\r\n"
                            f"Content-Type: {case.content_type}\r\nContent-Length: 1000\r\n\r\n")
            sock.sendall(request_head.encode() + case.body)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            return 0, b"no answer before the client's timeout"
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head:
        return 0, b"connection closed without an answer"
    return int(head.split(b" ", 2)[1]), body


def send_case(port: int, case: HostileCase, timeout_s: float = 30.0) -> tuple[int, bytes]:
    """One hostile request over a real socket (chunked or stalled when the case says so)."""
    if case.stall is not None:
        return _stalled(port, case, timeout_s)
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        headers = {"Content-Type": case.content_type} if case.content_type else {}
        headers.update(case.headers)
        if case.chunked:
            chunks = (case.body[i : i + (1 << 16)] for i in range(0, len(case.body), 1 << 16))
            conn.request(case.method, case.path, body=chunks, headers=headers,
                         encode_chunked=True)
        else:
            conn.request(case.method, case.path, body=case.body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    except (ConnectionError, http.client.HTTPException) as exc:
        # the server may answer 413 and close before reading the whole body
        return 0, f"{type(exc).__name__}: {exc}".encode()
    finally:
        conn.close()


def hostile(bundle: Path, workdir: Path) -> dict[str, Any]:
    """Every case of :func:`hostile_cases` over a real socket: one row each, 0 5xx allowed."""
    items = bundle_items(bundle)
    cases = hostile_cases(item=items[0][1] if items and items[0][0] == "books" else "b0")
    failures = []
    rows: list[dict[str, Any]] = []
    with ServerProcess(bundle, workdir / "server-hostile.log", **SERVER_SETTINGS) as server:
        for case in cases:
            start = time.perf_counter()
            status, body = send_case(server.port, case)
            seconds = time.perf_counter() - start
            problem = None if status == 0 and 413 in case.allowed else check_answer(
                case, status, body)
            if problem:
                failures.append(problem[:300])
            rows.append({"case": case.name, "method": case.method, "path": case.path,
                         "expected": sorted(case.allowed), "status": status,
                         "code": _error_code(body), "seconds": round(seconds, 3),
                         "ok": problem is None})
        alive = server.request("GET", "/health/ready")[0] == 200
    fives = sum(1 for row in rows if row["status"] >= 500)
    return {"inputs_tried": len(cases), "failures": failures, "server_5xx": fives,
            "rows": rows, "server_alive_after": alive,
            "passed": not failures and alive and fives == 0}


# --- slow clients
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
