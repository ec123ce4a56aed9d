"""Peak resident memory per stage of a run, for ``report.json`` (``memory.peak_rss_mb``).

A stage's peak is what a user sizing a machine needs: the most memory the process held while the
stage ran. On Linux it is exact: the kernel's high-water mark (``VmHWM``) is reset when a stage
starts (``/proc/self/clear_refs``) and read when it ends. Where that is not possible the peak is
the process's peak so far (``ru_maxrss``), an upper bound, and :func:`peak_source` says so.
Stages nest (``tasks`` holds each baseline's stage); an inner reset never hides an outer peak,
because the outer stage takes the high-water mark before every inner reset.

    with stage("pretrain"):
        ...
    peaks()  # {"pretrain": 512.3}
"""

from __future__ import annotations

import logging
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass
class _Open:
    name: str
    peak_kb: int = 0


_stack: list[_Open] = []
_peaks: dict[str, float] = {}


def _status_kb(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_high_water() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _high_water_kb() -> int:
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss  # bytes on macOS, KiB elsewhere


_RESETTABLE = _reset_high_water()


def peak_source() -> str:
    """How stage peaks are measured here (reported beside them)."""
    return "per stage (VmHWM reset)" if _RESETTABLE else "process peak so far (ru_maxrss)"


def current_rss_mb() -> float:
    """The resident memory now, in MiB (0 where /proc is not there)."""
    return (_status_kb("VmRSS") or 0) / 1024


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Record the peak RSS (MiB) of the block under ``name`` (a repeated name keeps the max)."""
    hwm = _high_water_kb()
    for outer in _stack:
        outer.peak_kb = max(outer.peak_kb, hwm)
    if _RESETTABLE:
        _reset_high_water()
    current = _Open(name)
    _stack.append(current)
    try:
        yield
    finally:
        current.peak_kb = max(current.peak_kb, _high_water_kb())
        _stack.pop()
        for outer in _stack:
            outer.peak_kb = max(outer.peak_kb, current.peak_kb)
        mb = round(current.peak_kb / 1024, 1)
        _peaks[name] = max(_peaks.get(name, 0.0), mb)
        logger.debug("stage %s: peak RSS %.1f MiB", name, mb)


def peaks() -> dict[str, float]:
    """Every finished stage's peak RSS in MiB, in the order they first finished."""
    return dict(_peaks)


def reset_peaks() -> None:
    """Forget finished stages (a new run in the same process)."""
    _peaks.clear()
