"""The service under test as a real uvicorn subprocess on a free loopback port, and its load.

``ServerProcess`` starts ``service.server.serve`` with ``USERVEC_*`` settings (pinned to the server
core), waits for ``/health/ready``, and offers small blocking HTTP helpers for control calls
(metrics, reloads). ``run_load`` runs :mod:`training.bench.loadgen` as a separate process pinned to
the client core, in the foreground or in the background (for fault injection during load).
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uservec.bench.common import (
    CLIENT_CORE,
    SERVER_CORE,
    free_port,
    rss_bytes,
    single_thread_env,
    taskset_prefix,
)

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
#: server settings every benchmark uses: one core, one onnxruntime thread, one inference thread
BASE_SETTINGS: dict[str, Any] = {
    "ort_intra_op_threads": 1,
    "inference_threads": 1,
    "log_level": "warning",
    "reload_on_sighup": False,
}
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


class ServerProcess:
    """A ``uservec`` server subprocess; use as a context manager."""

    def __init__(self, bundle: Path, log_path: Path, core: int | None = SERVER_CORE,
                 **settings: Any) -> None:
        self.bundle = bundle
        self.log_path = log_path
        self.core = core
        self.port = free_port()
        self.settings = {**BASE_SETTINGS, **settings, "bundle_path": str(bundle),
                         "host": HOST, "port": self.port}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _env(self) -> dict[str, str]:
        env = single_thread_env()
        for name, value in self.settings.items():
            if value is None:
                continue
            text = str(value).lower() if isinstance(value, bool) else str(value)
            env[f"USERVEC_{name.upper()}"] = text
        return env

    def start(self, timeout_s: float = 120.0) -> ServerProcess:
        prefix = taskset_prefix(self.core) if self.core is not None else []
        command = [*prefix, sys.executable, "-c", "from service.server import serve; serve()"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, env=self._env(), stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}; "
                                   f"see {self.log_path}")
            try:
                if self.request("GET", "/health/ready", timeout_s=2.0)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout_s:.0f} s; see {self.log_path}")

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- control calls
    def request(self, method: str, path: str, body: Any = None, timeout_s: float = 30.0,
                raw: bytes | None = None, headers: dict[str, str] | None = None,
                ) -> tuple[int, bytes]:
        """One blocking request; ``body`` is sent as JSON, ``raw`` as given."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout_s)
        try:
            payload = raw if raw is not None else (
                None if body is None else json.dumps(body).encode())
            sent = {"Content-Type": "application/json", **(headers or {})}
            conn.request(method, path, body=payload, headers=sent)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def metrics(self) -> dict[str, float]:
        """Prometheus samples keyed ``name{labels}`` (labels as rendered)."""
        status, text = self.request("GET", "/metrics")
        if status != 200:
            return {}
        samples = {}
        for line in text.decode().splitlines():
            match = _SAMPLE.match(line)
            if match:
                samples[f"{match.group(1)}{match.group(2) or ''}"] = float(match.group(3))
        return samples

    def rss(self) -> int:
        return rss_bytes(self.pid) if self.process is not None else 0


def metric_total(samples: dict[str, float], name: str, **labels: str) -> float:
    """Sum of every sample of ``name`` whose labels include ``labels``."""
    total = 0.0
    for key, value in samples.items():
        if key.split("{", 1)[0] != name:
            continue
        if all(f'{k}="{v}"' in key for k, v in labels.items()):
            total += value
    return total


def mean_batch_size(before: dict[str, float], after: dict[str, float]) -> float:
    """Mean rows per onnxruntime run between two metric snapshots."""
    rows = metric_total(after, "uservec_batch_size_sum") - metric_total(
        before, "uservec_batch_size_sum")
    runs = metric_total(after, "uservec_batch_size_count") - metric_total(
        before, "uservec_batch_size_count")
    return rows / runs if runs else float("nan")


class Load:
    """A load generator process; ``result()`` waits for it and returns its JSON."""

    def __init__(self, spec: dict[str, Any], workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix="load-", suffix=".json", dir=workdir)
        self.spec_path = Path(name)
        with open(handle, "w") as out:
            json.dump(spec, out)
        self.out_path = self.spec_path.with_name(self.spec_path.stem + ".out.json")
        self.log_path = self.spec_path.with_name(self.spec_path.stem + ".log")
        command = [*taskset_prefix(CLIENT_CORE), sys.executable, "-m", "uservec.bench.loadgen",
                   str(self.spec_path), str(self.out_path)]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, env=single_thread_env(), stdout=log,
                                            stderr=subprocess.STDOUT)

    def running(self) -> bool:
        return self.process.poll() is None

    def result(self, timeout_s: float = 900.0) -> dict[str, Any]:
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise RuntimeError(f"load generator exceeded {timeout_s:.0f} s") from None
        if code != 0 or not self.out_path.exists():
            raise RuntimeError(f"load generator failed ({code}): "
                               f"{self.log_path.read_text()[-2000:]}")
        result: dict[str, Any] = json.loads(self.out_path.read_text())
        for path in (self.spec_path, self.out_path, self.log_path):
            path.unlink(missing_ok=True)
        return result


def load_spec(server: ServerProcess, items: Sequence[tuple[str, str]], **fields: Any
              ) -> dict[str, Any]:
    """A load generator spec aimed at ``server`` sending random sequences over ``items``."""
    return {"host": HOST, "port": server.port, "items": [list(p) for p in items], **fields}


def run_load(server: ServerProcess, items: Sequence[tuple[str, str]], workdir: Path,
             **fields: Any) -> dict[str, Any]:
    """Run one load to completion (blocking) and return its result."""
    return Load(load_spec(server, items, **fields), workdir).result()


def server_errors(samples: dict[str, float]) -> int:
    """5xx answers the server counted, from its request histogram."""
    return int(sum(v for k, v in samples.items()
                   if k.startswith("uservec_request_duration_seconds_count")
                   and 'status="5' in k))


def error_code(body: bytes) -> str | None:
    """The ``error.code`` of an error answer (None: not the service's error shape)."""
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None
