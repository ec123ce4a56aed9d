"""App factory and lifespan: ``create_app(settings)`` builds the app; the lifespan loads the bundle.

Nothing heavy happens at import or in ``create_app``: the runtime (thread pool, cache connection,
micro-batcher, bundle) is built when the app starts and closed when it stops.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

import uservec
from uservec.service.admission import Admission
from uservec.service.auth import require_admin_key, require_api_key
from uservec.service.engine import Bundle
from uservec.service.errors import ServiceError, error_responses, install_error_handlers
from uservec.service.metrics import Metrics
from uservec.service.middleware import RequestContextMiddleware
from uservec.service.openapi import install_openapi
from uservec.service.routers import admin, bundle, embed, health, profile, recommend, users
from uservec.service.routers.docs import ASSETS_URL, install_docs
from uservec.service.runtime import Runtime
from uservec.service.settings import Settings, get_settings

logger = logging.getLogger(__name__)

DESCRIPTION = """\
One universal user vector from a behaviour sequence, and what it predicts: user attributes and
cross-domain recommendations. Send each user's events (item ids, oldest first); the model reads
the latest `max_len` of them (see `GET /v1/bundle`). Unknown item ids are reported, not errors.
Every result says how many known events it read (`known_events`); one that read none is marked
with `fallback`.

Request bodies are JSON (`Content-Type: application/json`, uncompressed, UTF-8) and take JSON
types as they are: strings are strings, numbers are finite numbers, booleans are booleans; nothing
is converted (`"k": "5"`, `"k": true` and `"item_id": 7` are 422s). Each field's description starts
with its accepted JSON type.

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
        docs_url=None,  # served by routers.docs from local assets, not a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    admission = Admission(settings.max_concurrent_requests, settings.saturation_window_s)
    app.state.admission = admission
    install_error_handlers(app)
    # auth dependencies (and their 401/403 in the docs) only when keys are configured: the
    # document must not ask for credentials the server does not check
    api_auth = _auth(require_api_key, settings.api_keys)
    routers = [module.router for module in (embed, profile, recommend, bundle, users)]
    for router in routers:
        app.include_router(router, **api_auth)
    app.include_router(health.router)
    if settings.admin_enabled:
        routers.append(admin.router)
        app.include_router(admin.router, **_auth(require_admin_key, settings.admin_api_keys))
    docs = install_docs(app, app.openapi_url or "/openapi.json")
    install_openapi(app, settings)
    open_paths = {getattr(route, "path", "") for route in health.router.routes}
    open_paths |= {*docs, app.openapi_url or ""}
    known_paths = open_paths | {getattr(route, "path", "") for r in routers for route in r.routes}
    limits = {
        "admission": admission,
        "max_body_bytes": settings.max_body_bytes,
        "body_timeout_s": settings.body_timeout_s,
        "retry_after_s": settings.retry_after_s,
        "open_paths": open_paths,
        "open_prefixes": (ASSETS_URL + "/",),
    }
    # one middleware: request context, with the limits inside it
    app.add_middleware(RequestContextMiddleware, metrics=metrics, known_paths=known_paths,
                       limits=limits)
    return app


def _auth(check: Callable[..., Awaitable[None]], keys: Sequence[str]) -> dict[str, Any]:
    """``include_router`` arguments that require one of ``keys`` (none: nothing to require)."""
    if not keys:
        return {}
    return {"dependencies": [Depends(check)],
            "responses": error_responses("missing_api_key", "invalid_api_key")}
