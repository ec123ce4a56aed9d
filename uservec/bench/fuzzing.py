"""Fuzzing: ``schemathesis run --checks all`` (a separate process) against a live server's own
OpenAPI document: 0 failures, 0 5xx, and no reload by the fuzzer."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from uservec.bench.hostile import ADMIN_KEY
from uservec.bench.server import HOST, ServerProcess, metric_total, server_errors


def demo_bundle(workdir: Path, seed: int = 0) -> Path:
    """Train and export the shipped demo config (what `uservec demo` serves), ~15 s."""
    from importlib.resources import files

    from uservec.demo import run_demo
    from uservec.training.config import load_config

    config = Path(str(files("uservec.configs") / "demo.toml"))
    cfg = load_config(config, ["export.enabled=true", f"seed={seed}"])
    return run_demo(cfg, workdir).path


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
