"""serve(): a real uvicorn process; SIGHUP reloads, SIGTERM drains in-flight requests and exits."""

from __future__ import annotations

import json
import os
import signal
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
import signal, sys
from uservec.service.server import serve
from uservec.service.settings import Settings

def done(*_):
    print("torch imported:", "torch" in sys.modules, flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, done)
serve(Settings(bundle_path=sys.argv[1], port=int(sys.argv[2]), max_batch_wait_ms=400,
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

        # a request still in its 400 ms batching window when SIGTERM arrives must complete
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


def test_an_admin_endpoint_without_a_key_on_a_public_interface_is_warned_about():
    from uservec.service.server import open_admin_warning
    from uservec.service.settings import Settings

    assert "anyone who reaches" in open_admin_warning(Settings(host="0.0.0.0"))
    assert open_admin_warning(Settings(host="0.0.0.0", admin_api_keys=["k"])) is None
    assert open_admin_warning(Settings(host="0.0.0.0", admin_enabled=False)) is None
    assert open_admin_warning(Settings(host="127.0.0.1")) is None

