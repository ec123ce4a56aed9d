"""``uservec demo``: the main job end to end on one machine, no data download and no Redis.

Check the port -> generate a dataset -> pretrain -> task adapters -> export a bundle into a new
versioned folder -> point ``bundles/current`` at it -> print ``curl`` and Python client examples
-> serve it with ``uservec serve`` in a child process (no torch there: ~150 MB instead of ~800).

A bundle folder is never written twice: a second demo while the first serves gets its own folder,
so the running server's bundle cannot change under it (and a busy port stops the second demo
before it trains at all).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from uservec.contract.ids import split_item_key
from uservec.training.config import ExperimentConfig
from uservec.training.data.dataset import PreparedDataset

log = logging.getLogger(__name__)

BUNDLES = "bundles"
CURRENT = "current"


@dataclass(frozen=True)
class DemoBundle:
    """What a demo run produced: the bundle folder and the request examples for it."""

    path: Path
    version: str
    events: list[dict[str, str]]
    target: str | None


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be served on (None: it can), found by binding it as uvicorn will."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (f"port {port} on {host} is already in use (a server from an earlier "
                        "`uservec demo`?): stop it, or pass --port, or --no-serve")
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def new_bundle_dir(out_dir: Path) -> Path:
    """A folder for this run's bundle that no earlier run has used (it does not exist yet)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    parent = out_dir / BUNDLES
    for attempt in range(1000):
        candidate = parent / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(f"no free bundle folder name under {parent}")


def point_current(bundle_dir: Path) -> Path:
    """Switch ``bundles/current`` to ``bundle_dir`` in one rename (a reader sees the old or the
    new bundle, never a missing one); returns the pointer."""
    pointer = bundle_dir.parent / CURRENT
    staging = bundle_dir.parent / f".{CURRENT}.{os.getpid()}"
    staging.unlink(missing_ok=True)
    staging.symlink_to(bundle_dir.name)  # relative: the run folder may move
    os.replace(staging, pointer)
    return pointer


def example_user(dataset: PreparedDataset, n_events: int = 8) -> list[dict[str, str]]:
    """The latest events of the first user with events in every domain, as request JSON."""
    for user in range(dataset.num_users):
        rows = range(int(dataset.offsets[user]), int(dataset.offsets[user + 1]))
        domains = {int(dataset.event_domain[r]) for r in rows}
        if len(domains) == len(dataset.domains):
            break
    events = []
    for row in list(rows)[-n_events:]:
        domain, item = split_item_key(str(dataset.catalog[dataset.item_index[row]]))
        events.append({"item_id": item, "domain": domain})
    return events


def source_only(events: list[dict[str, str]], target: str) -> list[dict[str, str]]:
    return [e for e in events if e["domain"] != target] or events


def curl_examples(base_url: str, events: list[dict[str, str]], target: str | None) -> str:
    """Ready-to-paste commands for every endpoint."""

    def post(path: str, body: dict[str, Any]) -> str:
        return (f"curl -s -X POST {base_url}{path} -H 'Content-Type: application/json' \\\n"
                f"     -d {shlex.quote(json.dumps(body))}")

    user = {"user_id": "u1", "events": events}
    lines = [
        f"curl -s {base_url}/health/ready",
        post("/embed", {"users": [user]}),
        post("/predict-profile", {"users": [user]}),
    ]
    if target is not None:
        cold = {"user_id": "u1", "events": source_only(events, target)}
        lines.append(post("/recommend", {"users": [cold], "domain": target, "k": 5}))
    lines += [f"curl -s {base_url}/v1/bundle", f"curl -s {base_url}/metrics | head"]
    return "\n\n".join(lines)


def client_examples(base_url: str, events: list[dict[str, str]], target: str | None) -> str:
    """The same requests with the Python client (``uservec.client``, no torch needed)."""
    listed = ", ".join(f"Event({e['item_id']!r}, {e['domain']!r})" for e in events)
    lines = [
        "from uservec.client import Client, Event, User",
        "",
        f"user = User([{listed}], user_id='u1')",
        f"with Client({base_url!r}) as client:",
        "    print(client.embed([user])[0].vector[:4])",
        "    print(client.predict_profile([user])[0].attributes)",
    ]
    if target is not None:
        sources = ", ".join(f"Event({e['item_id']!r}, {e['domain']!r})"
                            for e in source_only(events, target))
        lines += [f"    cold = User([{sources}])",
                  f"    print(client.recommend([cold], domain={target!r}, k=5)[0].items)"]
    lines.append("    print(client.bundle().bundle_version)")
    return "\n".join(lines)


def run_demo(cfg: ExperimentConfig, out_dir: Path) -> DemoBundle:
    """Train and export into a new versioned bundle folder, then point ``current`` at it.

    The export is switched on here and its folder chosen here, whatever ``cfg`` says.
    """
    from dataclasses import replace

    from uservec.pipeline import run_experiment
    from uservec.training.run_dir import RunDir

    bundle_dir = new_bundle_dir(out_dir)
    cfg = replace(cfg, export=replace(cfg.export, enabled=True, out=str(bundle_dir)))
    report = run_experiment(cfg, out_dir, resume=False)
    point_current(bundle_dir)
    dataset = RunDir(out_dir).load_dataset()
    target = next((t.target_domain for t in cfg.tasks if t.kind == "cross_domain"), None)
    return DemoBundle(bundle_dir, str(report["bundle"]["version"]), example_user(dataset), target)


# --- serving in a child process
def serve_child(bundle_dir: Path, host: str, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """``uservec serve`` for ``bundle_dir`` in its own process (which never imports torch)."""
    command = [sys.executable, "-m", "uservec.cli", "serve", "--bundle", str(bundle_dir),
               "--host", host, "--port", str(port)]
    env = {**os.environ, "USERVEC_JSON_LOGS": "false"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """Until ``url``/health/ready answers 200; RuntimeError if the child exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server was not ready after {timeout_s:.0f} s")


def process_memory(pid: int) -> tuple[bool | None, float | None]:
    """(torch loaded, RSS in MB) of a process, from /proc (None where /proc is not there)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None, None
    rss = next((int(line.split()[1]) / 1024 for line in status.splitlines()
                if line.startswith("VmRSS:")), None)
    return "libtorch" in maps, rss
