"""App factory and lifespan: ``create_app(settings)`` builds the app; the lifespan loads the bundle.

Nothing heavy happens at import or in ``create_app``: the runtime (thread pool, cache connection,
micro-batcher, bundle) is built when the app starts and closed when it stops.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

import uservec
from uservec.service.engine import Bundle
from uservec.service.errors import ServiceError, install_error_handlers
from uservec.service.metrics import Metrics
from uservec.service.middleware import LimitsMiddleware, RequestContextMiddleware
from uservec.service.routers import admin, bundle, embed, health, profile, recommend
from uservec.service.runtime import Runtime
from uservec.service.settings import Settings, get_settings

logger = logging.getLogger(__name__)

DESCRIPTION = """\
One universal user vector from a behaviour sequence, and what it predicts: user attributes and
cross-domain recommendations. Send each user's events (item ids, oldest first); the model reads
the latest `max_len` of them (see `GET /v1/bundle`). Unknown item ids are reported, not errors.

Every error has the shape `{"error": {"code", "message", "details"}}`; `code` is stable.
"""


def _install_sighup(runtime: Runtime) -> bool:
    """SIGHUP -> reload the bundle from its path; only possible on the main thread's loop."""
    loop = asyncio.get_running_loop()

    async def reload_from_signal() -> None:
        try:
            await runtime.reload()
        except ServiceError as exc:
            logger.error("SIGHUP reload failed, still serving the old bundle: %s", exc.message)

    def on_sighup() -> None:
        logger.info("SIGHUP: reloading bundle from %s", runtime.bundle_path)
        task = loop.create_task(reload_from_signal())
        runtime.background.add(task)
        task.add_done_callback(runtime.background.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_sighup)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError):
        logger.debug("SIGHUP reload not available (not on the main thread)")
        return False
    return True


def create_app(settings: Settings | None = None, loaded: Bundle | None = None) -> FastAPI:
    """Build the app; ``settings`` defaults to :func:`get_settings` (the environment).

    ``loaded``: a bundle already loaded with :func:`service.engine.load_bundle`, served from
    startup instead of loading ``settings.bundle_path`` again.
    """
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime(settings, metrics)
        app.state.runtime = runtime
        try:
            await runtime.start(loaded)
        except BaseException:
            await runtime.close()
            raise
        sighup = settings.reload_on_sighup and _install_sighup(runtime)
        try:
            yield
        finally:
            if sighup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await runtime.close()

    app = FastAPI(
        title="uservec",
        version=uservec.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app)
    routers = [m.router for m in (embed, profile, recommend, bundle, health)]
    if settings.admin_enabled:
        routers.append(admin.router)
    for router in routers:
        app.include_router(router)
    known_paths = {getattr(route, "path", "") for r in [app, *routers] for route in r.routes}
    docs = (app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url)
    open_paths = {getattr(route, "path", "") for route in health.router.routes}
    open_paths |= {path for path in docs if path}
    app.add_middleware(
        LimitsMiddleware,
        metrics=metrics,
        max_body_bytes=settings.max_body_bytes,
        max_concurrent=settings.max_concurrent_requests,
        retry_after_s=settings.retry_after_s,
        open_paths=open_paths,
    )
    app.add_middleware(RequestContextMiddleware, metrics=metrics, known_paths=known_paths)
    return app
