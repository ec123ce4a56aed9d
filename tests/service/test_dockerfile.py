"""The Dockerfile's entrypoint and healthcheck, run exactly as written but outside Docker.

No Docker engine runs on CI machines, so this is how the image's contract is checked: the same
ENTRYPOINT command serves a real bundle and the same HEALTHCHECK command turns healthy.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


def _instruction(name: str) -> str:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    match = re.search(rf"^{name}\s+(.*)$", text, flags=re.MULTILINE)
    assert match, f"Dockerfile has no {name}"
    return match.group(1).strip()


def _exec_form(text: str) -> list[str]:
    start = text.index("[")
    return json.loads(text[start:])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_dockerfile_installs_only_the_serving_extra_and_drops_root():
    text = DOCKERFILE.read_text()
    assert 'pip install -c constraints.txt ".[serve]"' in text
    assert "torch" not in text.split("FROM", 1)[1].lower().replace("no torch", "")
    assert re.search(r"^USER\s+(?!root\b|0\b)\S+", text, flags=re.MULTILINE)
    # it listens on 0.0.0.0: the reload endpoint exists only with an admin key, and the image
    # sets none (nor any API key) by itself
    env = " ".join(re.findall(r"^ENV\s(.*)$", text.replace("\\\n", " "), flags=re.MULTILINE))
    assert "USERVEC_HOST=0.0.0.0" in env and "KEYS" not in env


def test_entrypoint_serves_and_healthcheck_turns_healthy(main_bundle: Path):
    entrypoint = _exec_form(_instruction("ENTRYPOINT"))
    healthcheck = _exec_form(_instruction("HEALTHCHECK"))
    # the image's console script and python are this environment's
    bindir = Path(sys.executable).parent
    entrypoint[0] = str(bindir / entrypoint[0])
    healthcheck[0] = sys.executable if healthcheck[0] == "python" else healthcheck[0]
    port = _free_port()
    env = {**os.environ, "USERVEC_HOST": "127.0.0.1", "USERVEC_PORT": str(port),
           "USERVEC_BUNDLE_PATH": str(main_bundle)}
    server = subprocess.Popen(entrypoint, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        healthy = False
        while time.monotonic() < deadline and server.poll() is None:
            check = subprocess.run(healthcheck, env=env, capture_output=True, timeout=10)
            if check.returncode == 0:
                healthy = True
                break
            time.sleep(0.3)
        if not healthy:
            server.terminate()
            pytest.fail(f"healthcheck never passed; server said: {server.communicate()[1][-2000:]}")
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_image_copies_every_file_the_package_metadata_reads():
    """`pip install .` in the image fails if pyproject's readme or license file was not copied."""
    project = tomllib.loads((DOCKERFILE.parent / "pyproject.toml").read_text())["project"]
    needed = {"pyproject.toml", project["readme"], *project.get("license-files", [])}
    copied = {
        source
        for line in DOCKERFILE.read_text().splitlines() if line.startswith("COPY ")
        for source in line.split()[1:-1] if not source.startswith("--")
    }
    assert needed <= copied, f"Dockerfile does not COPY {sorted(needed - copied)}"
