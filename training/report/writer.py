"""``report.json`` (machine-readable) and ``report.md`` (for people), written side by side."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from uservec.training.report.markdown import render_markdown

logger = logging.getLogger(__name__)


@runtime_checkable
class JsonResult(Protocol):
    """A typed result that knows its ``report.json`` layout."""

    def to_json(self) -> Any: ...


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    """Write ``report.json`` and ``report.md`` into ``out_dir``."""
    (out_dir / "report.json").write_text(report_json(report))
    (out_dir / "report.md").write_text(render_markdown(report))
    logger.info("wrote %s and %s", out_dir / "report.json", out_dir / "report.md")


def report_json(report: dict[str, Any]) -> str:
    """The report as indented JSON; typed results write themselves (``to_json``)."""
    return json.dumps(report, indent=2, default=_json_default)


def _json_default(obj: object) -> Any:
    if isinstance(obj, JsonResult):
        return obj.to_json()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
