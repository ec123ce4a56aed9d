"""How endpoints reach the app's runtime: ``Annotated`` dependency aliases and the inference path.

The inference endpoints (``/embed``, ``/recommend``, ``/predict-profile``) read the runtime and
their stage timer with :func:`inference_context` instead of dependencies: they run on every
cache hit, where FastAPI's resolver cost about as much as the cache lookup itself (README,
Benchmarks). The other endpoints use the dependency aliases.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.metrics import Timings
from service.runtime import Runtime


# async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per dependency
# per request (measured: ~0.3-0.7 ms of a ~1.5 ms cache hit)
async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def inference_context(request: Request) -> tuple[Runtime, Timings]:
    """The runtime and the request's stage timer (created by the request middleware, or fresh)."""
    timings = getattr(request.state, "timings", None)
    if timings is None:
        timings = Timings()
        request.state.timings = timings
    runtime: Runtime = request.app.state.runtime
    return runtime, timings


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
