"""Writing the generated files, checking them, and adding inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from uservec.docs.benchmarks import benchmarks_page, benchmarks_summary
from uservec.docs.formatting import table
from uservec.docs.inputs import (
    BENCH_DIR,
    BENCH_INDEX,
    BENCHMARKS_PAGE,
    BULKY_KEYS,
    README,
    REPORTS_DIR,
    RESULTS_PAGE,
    DocsError,
    lookup,
    read_inputs,
    read_json,
)
from uservec.docs.results import results_page, results_summary


def error_codes() -> str:
    """The README's error table: every code the service returns, by HTTP status."""
    try:
        from uservec.service.errors import ERROR_CODES
    except ImportError as exc:  # the serve extra is not installed
        raise DocsError(f"the error table needs the service's dependencies ({exc})") from exc
    by_status: dict[int, list[str]] = {}
    for code, status in ERROR_CODES.items():
        by_status.setdefault(status, []).append(f"`{code}`")
    rows = [[str(status), ", ".join(codes)] for status, codes in sorted(by_status.items())]
    return "\n".join(table(["status", "`code`"], rows)).rstrip()


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the lines between ``<!-- name:begin ... -->`` and ``<!-- name:end -->``
    replaced by ``body``."""
    pattern = re.compile(rf"(<!-- {name}:begin[^\n]*-->\n).*?(<!-- {name}:end -->)", re.DOTALL)
    if not pattern.search(text):
        raise DocsError(f"README.md has no '<!-- {name}:begin -->' ... '<!-- {name}:end -->' block")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text, count=1)


def generate(root: Path) -> dict[Path, str]:
    """The content every generated file must have, from the inputs under ``root``."""
    if not (root / "docs").is_dir() or not (root / README).is_file():
        raise DocsError(f"{root.resolve()}: not the repository root (no README.md and docs/); "
                        "run from it or pass --root")
    inputs = read_inputs(root)
    readme = (root / README).read_text()
    readme = replace_block(readme, "results", results_summary(inputs))
    readme = replace_block(readme, "benchmarks", benchmarks_summary(inputs))
    readme = replace_block(readme, "errors", error_codes())
    return {RESULTS_PAGE: results_page(inputs), BENCHMARKS_PAGE: benchmarks_page(inputs),
            README: readme}


def stale(root: Path) -> list[Path]:
    """Generated files whose content differs from what their inputs give."""
    return [path for path, text in generate(root).items()
            if not (root / path).is_file() or (root / path).read_text() != text]


def write(root: Path) -> list[Path]:
    """Regenerate every generated file; returns the ones that changed."""
    changed = stale(root)
    for path, text in generate(root).items():
        if path in changed:
            (root / path).write_text(text)
    return changed


def slim(value: Any) -> Any:
    """A copy without the per-epoch and per-grid-point logs (:data:`BULKY_KEYS`)."""
    if isinstance(value, dict):
        return {k: slim(v) for k, v in value.items() if k not in BULKY_KEYS}
    if isinstance(value, list):
        return [slim(v) for v in value]
    return value


def _input_name(name: str | None, default: str) -> str:
    chosen = name or default
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", chosen):
        raise DocsError(f"input name {chosen!r}: use letters, digits, '.', '_' and '-' only")
    return chosen


def add_report(root: Path, run_dir: Path, name: str | None = None) -> Path:
    """Copy ``run_dir/report.json`` (slimmed) to ``docs/data/reports/<name>.json``."""
    report = read_json(run_dir / "report.json")
    default = str(lookup(report, "config", "name") or run_dir.name)
    target = root / REPORTS_DIR / f"{_input_name(name, default)}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(slim(report), indent=2) + "\n")
    return target


def add_bench(root: Path, source: Path, name: str | None = None) -> Path:
    """Copy a bench.json (or the one in folder ``source``) to ``docs/data/bench/<name>.json``."""
    path = source / "bench.json" if source.is_dir() else source
    bench = read_json(path)
    default = source.name if source.is_dir() else path.parent.name
    target = root / BENCH_DIR / f"{_input_name(name, default)}.json"
    if target.name == BENCH_INDEX.name:
        raise DocsError(f"input name {target.stem!r} is reserved")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(bench, indent=2) + "\n")
    return target
