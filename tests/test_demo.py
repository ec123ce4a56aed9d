"""`uservec demo`: the port is checked before training, each bundle gets its own folder behind an
atomically switched `current` pointer, and serving runs in a child process without torch."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from uservec.cli import main
from uservec.client import Client, Event, User
from uservec.demo import new_bundle_dir, point_current, port_problem, process_memory

REPO = Path(__file__).resolve().parents[1]
#: the shipped demo config made smaller still: this test trains for real, in seconds
QUICK = ["--set", "pretrain.epochs=1", "--set", "adapt.max_epochs=1",
         "--set", "data.synthetic_users=200", "--set", "data.synthetic_items=60",
         "--set", "model.dim=16", "--set", "model.max_len=10"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo(out: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "uservec.cli", "demo", "--out", str(out), "--port", str(port),
         *QUICK, *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def read_until(process: subprocess.Popen[str], pattern: str, timeout_s: float) -> str:
    """Output until a line matches ``pattern`` (AssertionError with the output otherwise)."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if selector.select(timeout=0.5):
            line = process.stdout.readline()
            if not line:
                break
            seen.append(line)
            if re.search(pattern, line):
                return line
    raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(seen)[-3000:]}")


def test_demo_serves_its_bundle_from_a_torch_free_child_and_a_second_demo_stops_early(
    tmp_path: Path,
) -> None:
    port = free_port()
    first = demo(tmp_path / "first", port)
    try:
        line = read_until(first, r"^serving on ", timeout_s=240)
        child = int(re.search(r"pid (\d+)", line).group(1))
        assert "no torch" in line
        assert process_memory(child)[0] is False  # checked independently of the demo's line
        bundles = tmp_path / "first" / "bundles"
        (folder,) = [p for p in bundles.iterdir() if p.name != "current"]
        assert (bundles / "current").resolve() == folder.resolve()
        with Client(f"http://127.0.0.1:{port}") as client:
            assert client.bundle().bundle_version.startswith("demo-")
            ids = [Event(raw, "domain0") for raw in ("1", "2", "3")]
            assert client.embed([User(ids)])[0].dim > 0
        # a second demo on the busy port refuses before it prepares or trains anything
        started = time.monotonic()
        second = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "second"),
                                           "--port", str(port), *QUICK])
        assert second.exit_code == 1 and "already in use" in second.output
        assert not (tmp_path / "second").exists()
        assert time.monotonic() - started < 10
        first.send_signal(signal.SIGTERM)
        first.wait(30)
        assert first.returncode == 0
        assert not Path(f"/proc/{child}").exists() or _zombie(child)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def _zombie(pid: int) -> bool:
    try:
        return " Z " in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True


def test_each_bundle_gets_a_new_folder_and_current_switches_in_one_rename(tmp_path: Path) -> None:
    first = new_bundle_dir(tmp_path)
    first.mkdir(parents=True)
    (first / "manifest.json").write_text("first")
    second = new_bundle_dir(tmp_path)
    assert second != first and not second.exists()
    second.mkdir()
    pointer = point_current(first)
    assert pointer.resolve() == first.resolve()
    assert os.readlink(pointer) == first.name  # relative: the run folder may move
    point_current(second)
    assert pointer.resolve() == second.resolve()
    assert (first / "manifest.json").read_text() == "first"  # never touched again
    assert sorted(p.name for p in tmp_path.joinpath("bundles").iterdir()) == sorted(
        [first.name, second.name, "current"])


def test_a_busy_port_is_found_before_anything_runs() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert "already in use" in (port_problem("127.0.0.1", port) or "")
    assert port_problem("127.0.0.1", free_port()) is None


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc")
def test_process_memory_sees_torch_in_a_process_that_loaded_it() -> None:
    import torch  # noqa: F401  (this test process has it: the check must say so)

    loaded, rss = process_memory(os.getpid())
    assert loaded is True and rss is not None and rss > 0
