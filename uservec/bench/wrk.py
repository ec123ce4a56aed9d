"""A third-party load generator beside ours: ``wrk`` on ``/embed`` cache misses, where installed.

Our load generator (:mod:`uservec.bench.loadgen`) is part of what is measured; ``wrk`` (C, LuaJIT)
checks that its figures are not an artefact of the client. A Lua script builds every request body
from random events of the bundle's items (a fresh sequence per request: cache misses, as in the
serving benchmark). Both clients load the same server (batching on) at the same concurrency, one
after the other, pinned to the client core.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from uservec.bench.common import CLIENT_CORE, bundle_items, taskset_prefix
from uservec.bench.server import HOST, ServerProcess, run_load
from uservec.contract.manifest import read_manifest

logger = logging.getLogger(__name__)

_RATE = re.compile(r"Requests/sec:\s+([0-9.]+)")
_PERCENTILE = re.compile(r"^\s+(50|75|90|99)%\s+([0-9.]+)(us|ms|s)\s*$", re.M)
_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}

_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local events = {%(events)s}
local length = %(length)d
math.randomseed(%(seed)d)
request = function()
  local picked = {}
  for i = 1, length do picked[i] = events[math.random(#events)] end
  local body = '{"users":[{"events":[' .. table.concat(picked, ",") .. ']}]}'
  return wrk.format(nil, "/embed", nil, body)
end
"""


def lua_script(items: list[tuple[str, str]], length: int, seed: int) -> str:
    """The wrk script: one JSON event per item, ``length`` random ones per request."""
    events = [json.dumps({"item_id": raw, "domain": domain}, separators=(",", ":"))
              for domain, raw in items]
    quoted = ",".join(f"[==[{event}]==]" for event in events)
    return _SCRIPT % {"events": quoted, "length": length, "seed": seed}


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s and latency percentiles (ms) from ``wrk --latency`` output."""
    rate = _RATE.search(output)
    latency = {f"p{p}": float(value) * _UNIT_MS[unit]
               for p, value, unit in _PERCENTILE.findall(output)}
    return {"requests_per_s": float(rate.group(1)) if rate else float("nan"),
            "latency_ms": latency}


def run_wrk(bundle: Path, workdir: Path, concurrency: int, seconds: int,
            seed: int) -> dict[str, Any]:
    """wrk and our client on one server (batching on), same concurrency, one after the other."""
    binary = shutil.which("wrk")
    if binary is None:
        return {"skipped": "wrk is not installed (apt-get install wrk); our client only"}
    items = bundle_items(bundle)
    length = read_manifest(bundle).model.max_len
    script = workdir / "wrk-embed.lua"
    script.write_text(lua_script(items, length, seed), encoding="utf-8")
    with ServerProcess(bundle, workdir / "server-wrk.log", cache_size=10_000) as server:
        url = f"http://{HOST}:{server.port}/embed"
        command = [*taskset_prefix(CLIENT_CORE), binary, "-t1", f"-c{concurrency}",
                   f"-d{seconds}s", "--latency", "-s", str(script), url]
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                              check=False)
        wrk = parse_wrk(done.stdout)
        errors = "Non-2xx" in done.stdout or "Socket errors" in done.stdout
        ours = run_load(server, items, workdir, concurrency=concurrency,
                        requests=_requests(wrk["requests_per_s"], seconds),
                        warmup=concurrency * 2, length=length, seed=seed + 1)
    return {
        "concurrency": concurrency,
        "seconds": seconds,
        "wrk": {**wrk, "errors_reported": errors, "version": _version(binary)},
        "ours": {"requests_per_s": ours["requests_per_s"], "latency_ms": ours["latency_ms"],
                 "failed": ours["failed"]},
    }


def _requests(rate: float, seconds: int) -> int:
    """About as many requests as wrk sent (at least 100)."""
    return max(100, int(rate * seconds)) if rate == rate else 100  # NaN: wrk printed no rate


def _version(binary: str) -> str:
    done = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or
                                                                     done.stderr) else ""
