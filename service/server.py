"""Run the service under uvicorn: ``serve(settings)`` (the CLI's ``uservec serve --bundle PATH``).

SIGTERM/SIGINT stop accepting connections, let in-flight requests finish (up to
``shutdown_timeout_s``), then the lifespan closes the batcher, cache and thread pool. SIGHUP
reloads the bundle. Slow clients meet three deadlines: the request head (``header_timeout_s``,
:mod:`service.connections`), the body (``body_timeout_s``, 408 from the app) and idle keep-alive
connections (``keep_alive_timeout_s``, uvicorn's own).
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from uservec.contract.logs import quiet_third_party
from uservec.service.app import create_app
from uservec.service.connections import protocol_class
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


def serve(settings: Settings | None = None) -> None:
    """Serve until SIGTERM/SIGINT; blocks.

    The bundle is loaded and checked before uvicorn starts, so a bad one raises
    :class:`~uservec.manifest.BundleError` here, with what is wrong, rather than ending in
    uvicorn's startup traceback; the app then serves that bundle without loading it again.
    """
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.json_logs)
    if "torch" in sys.modules:  # the serving path never imports it (tests/test_layers.py)
        logger.warning("torch is loaded in the serving process: it costs ~700 MB of memory and "
                       "serving does not need it; start the server in its own process")
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
        timeout_keep_alive=settings.keep_alive_timeout_s,
        http=protocol_class(settings.header_timeout_s, settings.max_header_bytes),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        server_header=False,
    )
    uvicorn.Server(config).run()
