"""``uservec serve``: one bundle over HTTP (serve install, no torch)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from uservec.cli.common import UserError

if TYPE_CHECKING:  # the service extra may not be installed; imported lazily below
    from uservec.service.settings import Settings


@click.command()
@click.option("--bundle", "bundle_path", type=click.Path(path_type=Path), default=None,
              help="Bundle folder to serve (env USERVEC_BUNDLE_PATH).")
@click.option("--host", default=None, help="Bind address (env USERVEC_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (env USERVEC_PORT, default 8000).")
@click.option("--redis-url", default=None,
              help="Use Redis as the cache, e.g. redis://127.0.0.1:6379/0 (env USERVEC_REDIS_URL).")
@click.option("--int8", "use_int8", is_flag=True, default=None,
              help="Serve the bundle's int8 model when it has one (env USERVEC_USE_INT8).")
def serve(
    bundle_path: Path | None, host: str | None, port: int | None, redis_url: str | None,
    use_int8: bool | None,
) -> None:
    """Serve a bundle over HTTP: /embed, /recommend, /predict-profile, /health, /metrics.

    Every setting can also come from a USERVEC_* environment variable (docs/service.md#settings);
    flags win. SIGTERM drains in-flight requests; SIGHUP reloads the bundle.

    Example: uservec serve --bundle bundles/movielens-100k --port 8000
    """
    from pydantic import ValidationError

    from uservec.service.settings import Settings

    flags: dict[str, Any] = {"bundle_path": bundle_path, "host": host, "port": port,
                             "redis_url": redis_url, "use_int8": use_int8}
    try:
        settings = Settings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        raise UserError(settings_problems(exc)) from exc
    _serve(settings)


def _serve(settings: Settings) -> None:
    """Serve until SIGTERM / Ctrl-C; a bundle that fails its checks is one line, not a traceback
    (``service.server.serve`` loads it before the server starts)."""
    from uservec.contract.manifest import BundleError
    from uservec.service.server import serve as serve_forever

    try:
        serve_forever(settings)
    except BundleError as exc:
        raise UserError(f"cannot serve {settings.bundle_path}: {exc}") from exc


def settings_problems(exc: Any) -> str:
    """One line per invalid service setting, naming its USERVEC_* variable and the bad value."""
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        lines.append(f"invalid setting {field} (USERVEC_{field.upper()}={error.get('input')!r}): "
                     f"{error['msg']}")
    return "; ".join(lines) or str(exc)
