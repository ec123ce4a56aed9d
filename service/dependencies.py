"""``Annotated`` dependency aliases shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from uservec.service.admission import Admission
from uservec.service.metrics import Timings
from uservec.service.runtime import Runtime


# async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per dependency
# per request (measured: ~0.3-0.7 ms of a ~1.5 ms cache hit)
async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_admission(request: Request) -> Admission:
    admission: Admission = request.app.state.admission
    return admission


def request_timings(request: Request) -> Timings:
    """The request's stage timer, created by the request middleware (a fresh one otherwise)."""
    timings = getattr(request.state, "timings", None)
    if timings is None:
        timings = Timings()
        request.state.timings = timings
    return timings


async def get_timings(request: Request) -> Timings:
    return request_timings(request)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
TimingsDep = Annotated[Timings, Depends(get_timings)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]
