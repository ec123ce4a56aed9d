"""Where a run's numbers were measured: CPU, Python and library versions, code commit.

Recorded in ``report.json`` (``environment``) so that generated docs can stamp every result
with the machine and code that produced it. Every value is a string (or None when unknown):
a report's numbers stay the metrics.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

from uservec.contract.fingerprint import code_version

#: the libraries whose versions change numbers or speed
LIBRARIES = ("torch", "numpy", "scikit-learn", "onnxruntime", "faiss-cpu")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def library_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, str | None]:
    """The ``environment`` block of a report."""
    info: dict[str, str | None] = {
        "cpu": cpu_model(),
        "cpu_count": str(os.cpu_count() or "unknown"),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    info.update({name: library_version(name) for name in LIBRARIES})
    info["code_version"] = code_version()
    return info
