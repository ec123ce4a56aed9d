"""Robustness of a live server: bounded load, faults during load, fuzzing, hostile inputs.

* load: N requests at concurrency 32 over /embed, /predict-profile and /recommend (half of them
  resend one of a pool of sequences: cache hits), zero failed requests; the server's RSS is sampled
  and the mean of the last quarter of the run minus the mean of the first must stay under a bound.
* faults: a private redis-server (own free port; the shared 6379 server is never touched) is killed
  and restarted under load: zero 5xx, and the hit rate after the restart returns to what it was;
  hot reloads (alternating two bundle copies) and a corrupt bundle on reload under load: zero
  failed requests, the corrupt one refused (409) while the old bundle keeps serving.
* fuzzing: schemathesis (CLI, a separate process) against the server's own OpenAPI schema.
* hostile inputs: :mod:`training.bench.hostile`, sent over a real socket.
All traffic goes to 127.0.0.1, bounded in count and time.
"""

from __future__ import annotations

import http.client
import logging
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
from uservec.bench.hostile import HostileCase, check_answer, hostile_cases
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
    with ServerProcess(copies[0], workdir / "server-reload.log") as server:
        spec = load_spec(server, bundle_items(bundle), concurrency=8, requests=10**7,
                         warmup=0, length=_max_len(bundle), max_seconds=seconds,
                         seed=stream_seed(seed, "reload"))
        load = Load(spec, workdir)
        gap = seconds / (reloads + 2)
        for index in range(reloads):
            time.sleep(gap)
            status, _ = server.request("POST", "/admin/reload",
                                       {"bundle_path": str(copies[index % 2])}, timeout_s=60)
            statuses.append(status)
        time.sleep(gap / 2)
        version_good = server.request("GET", "/health/ready")[1]
        corrupt_status, corrupt_body = server.request(
            "POST", "/admin/reload", {"bundle_path": str(copies[2])}, timeout_s=60)
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
def fuzz(bundle: Path, workdir: Path, max_examples: int, seed: int,
         max_seconds: int) -> dict[str, Any]:
    """schemathesis CLI against a live server: every operation, ``max_examples`` cases each."""
    exe = Path(sys.executable).with_name("schemathesis")
    if not exe.exists():
        return {"skipped": "schemathesis is not installed (pip install schemathesis)"}
    junit = workdir / "schemathesis-junit.xml"
    with ServerProcess(bundle, workdir / "server-fuzz.log", max_batch_wait_ms=0.5) as server:
        command = [str(exe), "run", f"http://{HOST}:{server.port}/openapi.json",
                   "--checks", "not_a_server_error,status_code_conformance,"
                   "content_type_conformance,response_schema_conformance",
                   "--max-examples", str(max_examples), "--seed", str(seed), "--workers", "1",
                   "--no-color", "--generation-database", "none",
                   "--report", "junit", "--report-junit-path", str(junit)]
        # no --max-time: with it schemathesis repeats fuzzing until the budget is spent
        try:
            completed = subprocess.run(command, capture_output=True, text=True,
                                       timeout=max_seconds, check=False)
        except subprocess.TimeoutExpired:
            return {"operations": 0, "max_examples_per_operation": max_examples,
                    "failures": [f"schemathesis did not finish within {max_seconds} s"],
                    "server_5xx_seen": 0, "exit_code": None, "summary": "timed out",
                    "passed": False}
        fives = sum(v for k, v in server.metrics().items()
                    if k.startswith("uservec_request_duration_seconds_count")
                    and 'status="5' in k)
    (workdir / "schemathesis.log").write_text(completed.stdout + completed.stderr)
    operations, failures = _junit(junit)
    return {"operations": operations, "max_examples_per_operation": max_examples,
            "failures": failures, "server_5xx_seen": int(fives), "exit_code": completed.returncode,
            "summary": _summary_line(completed.stdout),
            "passed": completed.returncode == 0 and not failures and fives == 0}


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


def send_case(port: int, case: HostileCase, timeout_s: float = 30.0) -> tuple[int, bytes]:
    """One hostile request over a real socket (chunked when the case says so)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        headers = {"Content-Type": case.content_type} if case.content_type else {}
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
    items = bundle_items(bundle)
    cases = hostile_cases(item=items[0][1] if items and items[0][0] == "books" else "b0")
    failures = []
    with ServerProcess(bundle, workdir / "server-hostile.log") as server:
        for case in cases:
            status, body = send_case(server.port, case)
            problem = None if status == 0 and 413 in case.allowed else check_answer(
                case, status, body)
            if problem:
                failures.append(problem[:300])
        alive = server.request("GET", "/health/ready")[0] == 200
    return {"inputs_tried": len(cases), "failures": failures, "server_alive_after": alive,
            "passed": not failures and alive}


def run_robustness(bundle: Path, fuzz_bundle: Path, workdir: Path, quick: bool,
                   seed: int) -> dict[str, Any]:
    """Every robustness check; ``fuzz_bundle`` is a small bundle (fuzzed reloads are cheap)."""
    steps = tqdm(total=5, desc="robustness", leave=False)
    result: dict[str, Any] = {}
    result["load"] = load_test(bundle, workdir, 300 if quick else 20_000, seed)
    steps.update()
    result["redis_fault"] = redis_fault(bundle, workdir, 4.0 if quick else 15.0, seed)
    steps.update()
    result["reload_fault"] = reload_fault(bundle, workdir, 4.0 if quick else 12.0,
                                          2 if quick else 6, seed)
    steps.update()
    result["fuzz"] = fuzz(fuzz_bundle, workdir, 5 if quick else 200, seed,
                          120 if quick else 900)
    steps.update()
    result["hostile"] = hostile(bundle, workdir)
    steps.update()
    steps.close()
    result["passed"] = all(part.get("passed", True) for part in result.values())
    return result
