"""serve(): a real uvicorn process; SIGHUP reloads, SIGTERM drains in-flight requests and exits."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from service_helpers import free_port, user

REPO = Path(__file__).resolve().parents[2]

# uvicorn re-raises SIGTERM once its graceful shutdown is complete: this handler then reports
SCRIPT = """
import signal, sys, time
from uservec.service import engine
from uservec.service.server import serve
from uservec.service.settings import Settings

# every model run takes 400 ms: a request is still in flight when SIGTERM arrives
run = engine.Bundle.run
engine.Bundle.run = lambda self, *args: (time.sleep(0.4), run(self, *args))[1]

def done(*_):
    print("torch imported:", "torch" in sys.modules, flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, done)
serve(Settings(bundle_path=sys.argv[1], port=int(sys.argv[2]),
               shutdown_timeout_s=10, ort_intra_op_threads=1))
"""


def wait_ready(url: str, process: subprocess.Popen[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("server never became ready")


def test_serve_answers_reloads_on_sighup_and_drains_on_sigterm(main_bundle):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(main_bundle), str(port)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_ready(url, process)
        process.send_signal(signal.SIGHUP)
        body = {"users": [user("b0", "g1")]}
        first = httpx.post(f"{url}/embed", json=body, timeout=10)
        assert first.status_code == 200

        # a request still in its 400 ms model run when SIGTERM arrives must complete
        in_flight: list[httpx.Response] = []
        worker = threading.Thread(
            target=lambda: in_flight.append(httpx.post(f"{url}/embed", json={
                "users": [user("b2")]}, timeout=10)))
        worker.start()
        time.sleep(0.15)
        process.send_signal(signal.SIGTERM)
        worker.join(15)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert in_flight and in_flight[0].status_code == 200
    assert "torch imported: False" in stdout
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    access = [r for r in records if r["logger"] == "uservec.access" and r["path"] == "/embed"]
    assert [r["status"] for r in access] == [200, 200]
    messages = [r["message"] for r in records]
    assert any(m.startswith("SIGHUP: reloading bundle") for m in messages)
    assert sum(m.startswith("loaded bundle") for m in messages) == 2  # startup + SIGHUP


@pytest.mark.parametrize("verify", ["true", "false"])
def test_uservec_serve_refuses_a_corrupt_model_in_one_line_before_starting(corrupt_bundle, verify):
    """The manifest parses, the model file is truncated: one error line, no uvicorn traceback."""
    env = {**os.environ, "USERVEC_VERIFY_CHECKSUMS": verify}
    process = subprocess.run(
        [sys.executable, "-c", "from uservec.cli import main; main()", "serve",
         "--bundle", str(corrupt_bundle), "--port", str(free_port())],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )
    assert process.returncode == 1
    assert "cannot serve" in process.stderr and "model.onnx" in process.stderr
    assert "Traceback" not in process.stderr and "Application startup failed" not in process.stderr


@pytest.fixture(scope="module")
def deadline_server(main_bundle, tmp_path_factory):
    from uservec.bench.server import ServerProcess

    log = tmp_path_factory.mktemp("deadlines") / "server.log"
    settings = {"header_timeout_s": 0.5, "body_timeout_s": 0.5, "keep_alive_timeout_s": 1,
                "max_header_bytes": 4096}
    with ServerProcess(main_bundle, log, core=None, **settings) as server:
        yield server


def exchange(port: int, data: bytes, timeout_s: float = 5.0) -> tuple[bytes, float]:
    """Send ``data``, read until the server closes; returns what came back and how long."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        if data:
            sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer, time.monotonic() - start


def error_of(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    return int(head.split(b" ")[1]), json.loads(body)["error"]


def test_a_connection_that_sends_nothing_is_closed_at_the_head_deadline(deadline_server):
    answer, seconds = exchange(deadline_server.port, b"")
    assert answer == b"" and 0.3 < seconds < 3


def test_a_request_head_that_stops_half_way_gets_a_408(deadline_server):
    """Slowloris: one header line, then nothing; uvicorn alone waited for ever."""
    answer, seconds = exchange(deadline_server.port, b"POST /embed HTTP/1.1\r\nHost: x\r\n")
    status, error = error_of(answer)
    assert (status, error["code"]) == (408, "request_timeout") and seconds < 3


def test_a_request_body_that_stops_half_way_gets_a_408_in_the_error_shape(deadline_server):
    head = (b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n")
    answer, seconds = exchange(deadline_server.port, head + b'{"users":')
    status, error = error_of(answer)
    assert (status, error["code"]) == (408, "request_timeout") and seconds < 3
    assert error["details"] == {"body_timeout_s": 0.5, "received_bytes": 9}


def test_an_oversize_request_head_gets_a_431(deadline_server):
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"y" * 100) for i in range(100))
    answer, _ = exchange(deadline_server.port, b"GET /health/live HTTP/1.1\r\nHost: x\r\n"
                         + headers)
    status, error = error_of(answer)
    assert (status, error["code"]) == (431, "headers_too_large")


def test_a_normal_request_with_a_body_larger_than_the_head_limit_is_served(deadline_server):
    body = json.dumps({"users": [user(*["b0"] * 400)]}).encode()
    assert len(body) > 4096
    response = httpx.post(f"http://127.0.0.1:{deadline_server.port}/embed", content=body,
                          headers={"content-type": "application/json"}, timeout=10)
    assert response.status_code == 200, response.text


def test_an_idle_keep_alive_connection_is_closed(deadline_server):
    request = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    answer, seconds = exchange(deadline_server.port, request)
    assert answer.startswith(b"HTTP/1.1 200") and 0.8 < seconds < 4
