"""``uservec demo``: the main job on generated data, then the bundle served in a child process."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from uservec.cli.common import UserError, friendly, shipped_config


@click.command()
@click.option("--config", "config_path", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Experiment config (default: the shipped configs/demo.toml).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("runs/demo"),
              show_default=True,
              help="Run folder; each run's bundle goes to its own OUT/bundles/<time> folder and "
                   "OUT/bundles/current points at the newest.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--no-serve", is_flag=True, help="Stop after exporting the bundle.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value (repeatable).")
@friendly
def demo(config_path: Path | None, out_dir: Path, host: str, port: int, no_serve: bool,
         overrides: tuple[str, ...]) -> None:
    """The main job: generate data, pretrain, train adapters, export, serve, print examples.

    Needs no data download and no Redis (in-process cache). The port is checked before any
    training; the bundle is written into a new versioned folder (a server already running on an
    earlier one keeps its bundle) and served by `uservec serve` in a child process, without torch.
    Use --config to run it on a real dataset's config, e.g. --config configs/movielens-100k.toml.

    Example: uservec demo --port 8000
    """
    from uservec.demo import port_problem, run_demo
    from uservec.training.config import load_config
    from uservec.training.run_dir import RunDir

    problem = None if no_serve else port_problem(host, port)
    if problem:
        raise UserError(problem)
    path = config_path or shipped_config("demo")
    cfg = load_config(path, ["export.enabled=true", *overrides])
    result = run_demo(cfg, out_dir)
    base = f"http://{host}:{port}"
    click.echo(f"\nbundle: {result.path} (version {result.version}; "
               f"{result.path.parent / 'current'} points at it)\n"
               f"report: {RunDir(out_dir).report_md}\n")
    click.echo("Try the service (in another terminal) with curl:\n")
    click.echo(curl_text(result, base) + "\n")
    click.echo("or with the Python client (pip install uservec; no torch needed):\n")
    click.echo(client_text(result, base) + "\n")
    if no_serve:
        click.echo(f"serve it later with: uservec serve --bundle {result.path}")
        return
    _serve_demo(result.path, host, port, out_dir / "serve.log")


def curl_text(result: Any, base: str) -> str:
    """curl requests against ``base`` for the demo's example user."""
    from uservec.demo import curl_examples

    return curl_examples(base, result.events, result.target)


def client_text(result: Any, base: str) -> str:
    """The same requests through the Python client."""
    from uservec.demo import client_examples

    return client_examples(base, result.events, result.target)


def _serve_demo(bundle_dir: Path, host: str, port: int, log_path: Path) -> None:
    """Serve through `uservec serve` in a child process until Ctrl-C (or the child stops)."""
    from uservec.demo import serve_child

    child = serve_child(bundle_dir, host, port, log_path)
    # SIGTERM to the demo stops its server too (the finally below), not only the demo
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        _watch(child, f"http://{host}:{port}", log_path)
    except KeyboardInterrupt:
        click.echo("stopping the server")
    finally:
        _stop(child)


def _watch(child: subprocess.Popen[bytes], base: str, log_path: Path) -> None:
    """Wait until the child answers, say so, then wait for it to stop."""
    from uservec.demo import process_memory, wait_ready

    try:
        wait_ready(base, child)
    except RuntimeError as exc:
        raise UserError(f"{exc}; see {log_path}") from exc
    torch_loaded, rss = process_memory(child.pid)
    memory = "" if rss is None else f", RSS {rss:.0f} MB"
    torch_note = {True: ", torch LOADED", False: ", no torch", None: ""}[torch_loaded]
    click.echo(f"serving on {base} (uservec serve, pid {child.pid}{torch_note}{memory}; "
               f"log {log_path}); Ctrl-C to stop")
    code = child.wait()
    if code not in (0, -signal.SIGTERM, -signal.SIGINT):  # stopped by a signal: no error
        raise UserError(f"the server stopped with code {code}; see {log_path}")
    click.echo("the server stopped")


def _stop(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the server drains), then SIGKILL if it has not stopped within 30 s."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
