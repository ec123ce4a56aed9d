"""Helpers for the service tests: request bodies, reference computations, the app under test."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI
from service_bundles import BOOKS, GAMES, MAX_LEN, N_ITEMS, raw_id

from uservec.contract.ids import item_key
from uservec.contract.sequences import encode_sequence
from uservec.contract.vocab import Vocabulary
from uservec.service.app import create_app
from uservec.service.runtime import Runtime
from uservec.service.settings import Settings


# --- request bodies
def event(raw: str, **extra: Any) -> dict[str, Any]:
    """An event of item ``raw`` (``b<i>`` = books, ``g<i>`` = games, anything else = unknown)."""
    return {"item_id": raw, "domain": GAMES if raw.startswith("g") else BOOKS, **extra}


def user(*raws: str, user_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"user_id": user_id, "events": [event(raw) for raw in raws], **extra}


def random_users(n: int, seed: int = 0, min_len: int = 1, max_len: int = 12) -> list[list[str]]:
    """Raw-id sequences over both domains, some longer than the model's window."""
    rng = np.random.default_rng(seed)
    return [
        [raw_id(int(p))[1] for p in rng.integers(0, N_ITEMS, size=rng.integers(min_len, max_len))]
        for _ in range(n)
    ]


# --- reference computations, straight from the bundle files
class Reference:
    """onnxruntime on model.onnx with the training-side encoding (full max_len window, one row)."""

    def __init__(self, bundle_dir: Path) -> None:
        import onnxruntime as ort

        self.dir = bundle_dir
        self.manifest = json.loads((bundle_dir / "manifest.json").read_text())
        self.vocab = Vocabulary.load(bundle_dir / "vocab.json")
        self.session = ort.InferenceSession(str(bundle_dir / "model.onnx"),
                                            providers=["CPUExecutionProvider"])
        self.names = [o.name for o in self.session.get_outputs()]

    @property
    def version(self) -> str:
        return str(self.manifest["bundle_version"])

    def ids(self, raws: list[str]) -> np.ndarray:
        return self.vocab.encode(item_key(raw, GAMES if raw.startswith("g") else BOOKS)
                                 for raw in raws)

    def outputs(self, raws: list[str]) -> dict[str, np.ndarray]:
        items = encode_sequence(self.ids(raws), MAX_LEN)[None, :]  # (1, L)
        values = self.session.run(self.names, {"items": items})
        return {name: value[0] for name, value in zip(self.names, values, strict=True)}

    def item_vectors(self, task: str) -> tuple[np.ndarray, list[str]]:
        keys = json.loads((self.dir / f"items/{task}.json").read_text())
        return np.load(self.dir / f"items/{task}.npy"), keys

    def top_k(self, task: str, raws: list[str], k: int, excluded: set[str]) -> list[str]:
        """Brute-force top-k raw ids by inner product, skipping excluded item keys."""
        vectors, keys = self.item_vectors(task)
        scores = vectors @ self.outputs(raws)[f"query.{task}"]  # (N,)
        order = sorted(range(len(keys)), key=lambda row: -scores[row])
        kept = [keys[row] for row in order if keys[row] not in excluded]
        return [key.split("::", 1)[1] for key in kept[:k]]


# --- the app under test
@dataclass
class Served:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    def metric(self, name: str, **labels: str) -> float:
        """Current value of a sample on this app's own registry (0 when absent)."""
        value = self.app.state.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else float(value)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Served]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield Served(app, client)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The one error shape, with the documented status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


# --- Redis
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class OwnRedis:
    """A private redis-server on a free port that a test may kill and restart."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while not redis_answers(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)




def hold_inference(app: Any, monkeypatch: Any) -> threading.Event:
    """Make every model run of ``app``'s current bundle wait until the returned event is set:
    keeps a request in flight for as long as a test needs (batching no longer waits when idle)."""
    release = threading.Event()
    for graph in app.state.runtime.current.graphs.values():
        def held(*args: Any, _run: Any = graph.session.run, **kwargs: Any) -> Any:
            release.wait(30)
            return _run(*args, **kwargs)
        monkeypatch.setattr(graph.session, "run", held)
    return release
