"""Run the service under uvicorn: ``serve(settings)`` (the CLI's ``uservec serve --bundle PATH``).

SIGTERM/SIGINT stop accepting connections, let in-flight requests finish (up to
``shutdown_timeout_s``), then the lifespan closes the batcher, cache and thread pool. SIGHUP
reloads the bundle.
"""

from __future__ import annotations

import logging

import uvicorn

from uservec.contract.logs import quiet_third_party
from uservec.service.app import create_app
from uservec.service.middleware import JsonFormatter
from uservec.service.runtime import load_configured
from uservec.service.settings import Settings, get_settings

logger = logging.getLogger(__name__)


def configure_logging(level: str, json_logs: bool) -> None:
    """Root handler for the service and uvicorn loggers; JSON lines by default."""
    handler = logging.StreamHandler()
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    quiet_third_party(root.level)


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def open_admin_warning(settings: Settings) -> str | None:
    """What to say when ``/admin/reload`` has no key and listens beyond this machine."""
    if not settings.admin_enabled or settings.effective_admin_keys:
        return None
    if settings.host in LOOPBACK_HOSTS:
        return None
    return (
        f"/admin/reload is enabled without an API key on {settings.host}: anyone who reaches "
        "this port can make the service load any folder it can read; set "
        "USERVEC_ADMIN_API_KEYS, or USERVEC_ADMIN_ENABLED=false"
    )


def serve(settings: Settings | None = None) -> None:
    """Serve until SIGTERM/SIGINT; blocks.

    The bundle is loaded and checked before uvicorn starts, so a bad one raises
    :class:`~uservec.manifest.BundleError` here, with what is wrong, rather than ending in
    uvicorn's startup traceback; the app then serves that bundle without loading it again.
    """
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.json_logs)
    warning = open_admin_warning(settings)
    if warning:
        logger.warning(warning)
    loaded = None
    if settings.bundle_path is not None:
        loaded = load_configured(settings, settings.bundle_path)
    config = uvicorn.Config(
        create_app(settings, loaded),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,  # the request middleware writes a structured access log
        lifespan="on",
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        server_header=False,
    )
    uvicorn.Server(config).run()
