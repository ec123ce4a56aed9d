"""docs/deploy: the compose file, its load balancer and the rolling-reload script, checked without
Docker (CI machines have no engine): every path it builds or mounts exists, every USERVEC_*
variable is a real service setting with a valid value, every health check asks a real endpoint on
the port that serves it, and the reload script signals one replica at a time."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from uservec.service.app import create_app
from uservec.service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "docs" / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
NGINX_FILE = DEPLOY / "nginx.conf"
RELOAD_SCRIPT = DEPLOY / "rolling-reload.sh"
DOC = ROOT / "docs" / "deploy.md"
#: ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")

COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
NGINX = NGINX_FILE.read_text()


def expand(text: str) -> str:
    """Compose's interpolation with an empty environment: defaults applied; a variable without
    one must be a required one (``:?``), which stays as ``<NAME>``."""
    def one(match: re.Match[str]) -> str:
        name, operator, value = match.groups()
        if operator and operator.endswith("-"):
            return value
        assert operator and operator.endswith("?"), (
            f"${{{name}}} has no default and is not required (${{{name}:?message}}): an unset "
            "variable would silently be empty")
        return f"<{name}>"

    return INTERPOLATION.sub(one, str(text))


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: expand(value) for key, value in env.items()}


def mounts(service: str) -> list[tuple[str, str, str]]:
    """(source, target, mode) of each volume, short syntax."""
    out = []
    for volume in SERVICES[service].get("volumes", []):
        assert isinstance(volume, str), "use the short syntax SOURCE:TARGET:MODE"
        source, target, *mode = volume.rsplit(":", 2) if volume.count(":") >= 2 else (
            *volume.split(":", 1), "rw")
        out.append((source, target, mode[0] if mode else "rw"))
    return out


def api_paths() -> dict[str, set[str]]:
    """Path -> methods of the real app, as its OpenAPI schema lists them."""
    app = create_app(Settings(bundle_path=None))
    return {path: set(methods) for path, methods in app.openapi()["paths"].items()}


def url_in(command: list[str]) -> str:
    found = [m for part in command for m in re.findall(r"https?://[^\s'\"]+", part)]
    assert len(found) == 1, command
    return found[0]


def test_replicas_redis_and_a_load_balancer_are_declared():
    assert set(SERVICES) == {"uservec", "redis", "lb"}
    assert SERVICES["uservec"]["deploy"]["replicas"] >= 2
    assert "ports" not in SERVICES["uservec"]  # only the load balancer is published
    assert SERVICES["lb"]["depends_on"]["uservec"]["condition"] == "service_healthy"
    assert SERVICES["uservec"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_every_path_built_or_mounted_exists_in_the_repository():
    build = SERVICES["uservec"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == ROOT and (context / build["dockerfile"]).is_file()
    checked = 0
    for name in SERVICES:
        for source, _, _ in mounts(name):
            if source.startswith("${"):
                # an operator's folder, not the repository's: required and documented
                variable = INTERPOLATION.fullmatch(source)
                assert variable and variable.group(2) == ":?", source
                assert f"`{variable.group(1)}`" in DOC.read_text()
                continue
            assert source.startswith("."), f"{source}: a bind mount, relative to the compose file"
            assert (DEPLOY / source).exists(), source
            checked += 1
    assert checked >= 1  # the nginx configuration


def test_every_uservec_variable_is_a_service_setting_with_a_valid_value():
    text = COMPOSE_FILE.read_text()
    named = set(re.findall(r"\bUSERVEC_[A-Z0-9_]+", text))
    fields = {f"USERVEC_{name.upper()}" for name in Settings.model_fields}
    assert named and named <= fields, f"not settings: {sorted(named - fields)}"
    for service in SERVICES:
        env = environment(service)
        settings = {key.removeprefix("USERVEC_").lower(): value for key, value in env.items()
                    if key.startswith("USERVEC_")}
        Settings(**settings)  # pydantic refuses a value the service would refuse at start-up
    # compose-only variables are not USERVEC_*: nothing else reads them
    for variable in {m.group(1) for m in INTERPOLATION.finditer(text)}:
        assert variable in fields or f"`{variable}`" in DOC.read_text(), variable


def test_replicas_serve_a_read_only_bundle_through_a_shared_redis():
    env = environment("uservec")
    (_, target, mode), = mounts("uservec")
    assert mode == "ro"
    assert Path(env["USERVEC_BUNDLE_PATH"]).is_relative_to(target)
    redis = urlparse(env["USERVEC_REDIS_URL"])
    assert redis.scheme == "redis" and redis.hostname == "redis"
    assert str(redis.port) in SERVICES["redis"]["expose"]
    assert env["USERVEC_PORT"] in SERVICES["uservec"]["expose"]
    assert env["USERVEC_HOST"] == "0.0.0.0"  # reachable by the load balancer
    # the admin endpoint would load any folder a request names: off, or behind a required key
    admin = Settings(admin_enabled=env.get("USERVEC_ADMIN_ENABLED", "true"))
    assert not admin.admin_enabled or "USERVEC_ADMIN_API_KEYS" in env


def test_health_checks_ask_real_endpoints_on_the_ports_that_serve_them():
    assert all("healthcheck" in service for service in SERVICES.values())
    paths = api_paths()
    # a replica: the Dockerfile's own HEALTHCHECK, which tests/service/test_dockerfile.py runs
    replica = SERVICES["uservec"]["healthcheck"]["test"]
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    healthcheck = re.search(r"^HEALTHCHECK\s.*?CMD\s+(\[.*\])\s*$", dockerfile, re.MULTILINE)
    assert healthcheck and replica == ["CMD", *json.loads(healthcheck.group(1))]
    url = urlparse(url_in(replica).replace("%s", environment("uservec")["USERVEC_PORT"]))
    assert url.path == "/health/ready" and "get" in paths[url.path]
    # the load balancer: through nginx to a replica's liveness probe
    balancer = urlparse(url_in(SERVICES["lb"]["healthcheck"]["test"]))
    assert "get" in paths[balancer.path]
    published = [expand(port).rsplit(":", 1)[1] for port in SERVICES["lb"]["ports"]]
    assert str(balancer.port) in published
    assert re.search(rf"^\s*listen\s+{balancer.port};", NGINX, re.MULTILINE)
    assert SERVICES["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_the_load_balancer_proxies_to_every_replica():
    (source, target, mode), = mounts("lb")
    assert mode == "ro"
    assert (DEPLOY / source).resolve() == NGINX_FILE and target == "/etc/nginx/nginx.conf"
    upstream = re.search(r"upstream\s+(\w+)\s*\{(.*?)\}", NGINX, re.DOTALL)
    assert upstream
    server = re.search(r"^\s*server\s+([\w.-]+):(\d+)\s+([^;]*);", upstream.group(2),
                       re.MULTILINE)
    assert server and server.group(1) == "uservec"
    assert server.group(2) == environment("uservec")["USERVEC_PORT"]
    assert "resolve" in server.group(3).split()  # replicas added by --scale are found
    assert re.search(rf"proxy_pass\s+http://{upstream.group(1)};", NGINX)
    # larger than the service's body limit: the service's own 413 reaches the client
    limit = re.search(r"client_max_body_size\s+(\d+)m;", NGINX)
    assert limit and int(limit.group(1)) * 2**20 > Settings().max_body_bytes


# --- the rolling reload, against a stand-in `docker` that records what it is asked
FAKE_DOCKER = """#!/usr/bin/env bash
state={state}
echo "$*" >> "$state/calls"
case "$1" in
  compose) printf 'c1\\nc2\\nc3\\n' ;;
  kill) [ -e "$state/refuse-$4" ] || touch "$state/reloaded-$4" ;;
  exec) if [ -e "$state/reloaded-$2" ]; then echo new-version; else echo old-version; fi ;;
esac
"""


def _run_reload(tmp_path: Path, refuse: str | None = None) -> tuple[subprocess.CompletedProcess,
                                                                    list[str], Path]:
    state, bin_dir, bundles = tmp_path / "state", tmp_path / "bin", tmp_path / "bundles"
    for folder in (state, bin_dir, bundles / "v1", bundles / "v2"):
        folder.mkdir(parents=True)
    (bundles / "v2" / "manifest.json").write_text(json.dumps({"bundle_version": "new-version"}))
    (bundles / "current").symlink_to("v1")
    if refuse:
        (state / f"refuse-{refuse}").touch()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER.format(state=shlex.quote(str(state))))
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "BUNDLES_DIR": str(bundles),
           "RELOAD_WAIT_S": "2"}
    result = subprocess.run(["bash", str(RELOAD_SCRIPT), "v2"], env=env, capture_output=True,
                            text=True, timeout=60)
    calls = (state / "calls").read_text().splitlines() if (state / "calls").exists() else []
    return result, calls, bundles


def test_rolling_reload_switches_the_link_then_signals_one_replica_at_a_time(tmp_path):
    result, calls, bundles = _run_reload(tmp_path)
    assert result.returncode == 0, result.stderr
    assert os.readlink(bundles / "current") == "v2"
    assert calls[0].startswith("compose -f ") and calls[0].endswith("ps -q uservec")
    assert Path(calls[0].split()[2]).resolve() == COMPOSE_FILE
    signalled = [call for call in calls if call.startswith("kill")]
    assert signalled == [f"kill --signal HUP c{i}" for i in (1, 2, 3)]
    # each replica is asked for its version after its signal and before the next one's
    order = [call.split()[0] + call.split()[-1 if call.startswith("kill") else 1] for call in
             calls[1:]]
    assert order.index("killc2") > order.index("execc1") > order.index("killc1")
    assert order.index("killc3") > order.index("execc2") > order.index("killc2")
    # the version comes from a real endpoint, on the port the replicas serve
    asked = urlparse(url_in([next(c for c in calls if c.startswith("exec"))]))
    assert "get" in api_paths()[asked.path] and asked.path == "/health/ready"
    assert str(asked.port) == environment("uservec")["USERVEC_PORT"]


def test_rolling_reload_stops_at_a_replica_that_keeps_the_old_bundle(tmp_path):
    result, calls, _ = _run_reload(tmp_path, refuse="c2")
    assert result.returncode == 1
    assert "c2 still serves 'old-version'" in result.stderr
    assert "kill --signal HUP c3" not in calls  # the rest of the pool is left alone


@pytest.mark.parametrize("path", [COMPOSE_FILE, NGINX_FILE, RELOAD_SCRIPT])
def test_the_deployment_docs_name_each_file(path):
    assert f"deploy/{path.name}" in DOC.read_text()
