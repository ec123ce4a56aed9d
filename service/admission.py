"""Admission control: the in-flight slots API requests take, and what readiness learns from them.

A request takes a slot only once its whole body has arrived (a slow or stalled upload holds none),
and gives it back when its response is sent. A request that finds every slot taken is refused
(429); :meth:`Admission.saturation` tells ``/health/ready`` how recently that happened, so a load
balancer stops sending work to a replica that is turning it away.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Saturation:
    """Readiness's view of a saturated service (see :meth:`Admission.saturation`)."""

    in_flight: int
    max_concurrent: int
    last_refused_s_ago: float
    refused_in_window: int


class Admission:
    """Counts in-flight requests and bodies still arriving; remembers recent refusals."""

    def __init__(self, max_concurrent: int, saturation_window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_concurrent = max_concurrent
        self.saturation_window_s = saturation_window_s
        self.clock = clock
        self.in_flight = 0
        #: requests whose body is still arriving (they hold no slot)
        self.receiving = 0
        self._refusals: list[float] = []

    def try_acquire(self) -> bool:
        """Take a slot; False (and the refusal remembered) when every slot is taken."""
        if self.in_flight >= self.max_concurrent:
            now = self.clock()
            self._refusals.append(now)
            self._forget(now)
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        self.in_flight -= 1

    def _forget(self, now: float) -> None:
        """Drop refusals older than the window (the list stays bounded by the refusal rate)."""
        horizon = now - self.saturation_window_s
        if self._refusals and self._refusals[0] < horizon:
            self._refusals = [t for t in self._refusals if t >= horizon]

    def saturation(self) -> Saturation | None:
        """Non-None while a request was refused for lack of a slot within the window."""
        if not self.saturation_window_s or not self._refusals:
            return None
        now = self.clock()
        self._forget(now)
        if not self._refusals:
            return None
        return Saturation(self.in_flight, self.max_concurrent, now - self._refusals[-1],
                          len(self._refusals))
