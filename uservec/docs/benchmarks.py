"""docs/benchmarks.md and the README's benchmark summary, from the bench.json inputs."""

from __future__ import annotations

from typing import Any

from uservec.bench.report import render as render_bench
from uservec.bench.report import targets as bench_targets
from uservec.docs.formatting import fmt, metric_label, slug, table
from uservec.docs.inputs import (
    BENCH_DIR,
    BENCH_INDEX,
    BENCHMARKS_PAGE,
    GENERATED,
    Inputs,
    lookup,
    stamp_of,
)


def _worst_change(changes: Any) -> tuple[float, str] | None:
    """The most negative int8 - fp32 task-metric change (as a fraction) and where it is."""
    found = [(value, f"{task.replace('_', ' ')} {metric_label(metric)}")
             for task, metrics in (changes or {}).items()
             if isinstance(metrics, dict)
             for metric, value in metrics.items() if isinstance(value, float)]
    return min(found) if found else None


def _int8_row(section: Any) -> list[str] | None:
    static = lookup(section, "methods", "static")
    if not isinstance(static, dict):
        return None
    measured = (f"{fmt(static.get('speedup_batch1'), 2)}x / "
                f"{fmt(static.get('speedup_batch32'), 2)}x (batch 1 / 32)")
    worst = _worst_change(static.get("task_metric_change"))
    measured += ("; task metrics not measured" if worst is None else
                 f"; worst metric change {worst[0] * 100:+.2f} pt ({worst[1]})")
    return ["int8 (static) vs fp32 speed", "-", measured, "-"]


def _checks(robustness: Any) -> str:
    """``load, redis_fault: passed; fuzz: failed`` from the robustness section's checks."""
    checks = {name: part.get("passed") for name, part in (robustness or {}).items()
              if isinstance(part, dict) and "passed" in part}
    return "; ".join(f"{', '.join(n for n, ok in checks.items() if ok is verdict)}: {word}"
                     for verdict, word in ((True, "passed"), (False, "failed"))
                     if verdict in checks.values())


def bench_rows(bench: dict[str, Any]) -> list[list[str]]:
    """(benchmark, goal, measured, met) rows of one bench.json: its targets plus int8."""
    rows = [[str(target), str(goal), str(measured) or _checks(bench.get("robustness")),
             "yes" if met is True else "**no**" if met is False else str(met)]
            for target, goal, measured, met in bench_targets(bench)]
    int8 = _int8_row(bench.get("int8"))
    has_int8 = any(row[0].startswith("int8") for row in rows)
    return [*rows, int8] if int8 and not has_int8 else rows


def bench_section(name: str, bench: dict[str, Any], note: str | None) -> list[str]:
    body = render_bench(bench).splitlines()[1:]  # its own title is replaced by the input's name
    body = [f"#{line}" if line.startswith("## ") else line for line in body]
    return [f"## {name}", "", *([note, ""] if note else []), stamp_of(bench).line(), *body, ""]


def benchmarks_page(inputs: Inputs) -> str:
    rows = [[f"[{name}](#{slug(name)})", ", ".join(k for k in bench if k != "meta"),
             stamp_of(bench).cpu, stamp_of(bench).date, stamp_of(bench).commit,
             inputs.notes.get(name, "")] for name, bench in inputs.benches.items()]
    lines = ["# Benchmarks", "", GENERATED.format(inputs=f"`{BENCH_DIR}/*.json`"), "",
             "`uservec bench` measures the service and the model on the machine it runs on. Every "
             "figure is a ratio of two measurements taken side by side in the same run (HTTP vs "
             "the raw engine, cache hit vs miss, int8 vs fp32, approximate vs exact search), "
             "because shared machines are noisy; compare absolute numbers only within one input. "
             "Why some targets are missed: [analysis](analysis.md#serving-why-some-benchmark-"
             "targets-are-missed); int8: [int8](int8.md). How to add a measurement: "
             "[below](#adding-a-measurement).", "",
             "## Summary", "", *benchmarks_summary(inputs, page="").splitlines(), "",
             "## Inputs", "",
             *table(["input", "suites", "CPU", "date", "commit", "note"], rows)]
    for name, bench in inputs.benches.items():
        lines += bench_section(name, bench, inputs.notes.get(name))
    lines += ["## Adding a measurement", "",
              "```bash",
              "uservec bench --out bench/                # main suite",
              "uservec bench --scale --out bench-scale/  # 1M-item retrieval",
              "uservec bench --robustness --out bench-robustness/",
              "uservec bench --bundle BUNDLE --only int8 --out bench-int8/   # int8 of a real run",
              "uservec docs --add-bench bench/bench.json --name NAME",
              "```", "",
              f"`{BENCH_INDEX}` lists the inputs the README's summary reads (`readme`) and a "
              "note per input (`notes`).", ""]
    return "\n".join(lines).rstrip() + "\n"


def benchmarks_summary(inputs: Inputs, page: str = str(BENCHMARKS_PAGE)) -> str:
    """One table: every target of the README's bench inputs, then the machine of each input;
    links go to ``page`` (empty: the page the table is on)."""
    rows = [[*row, f"[{name}]({page}#{slug(name)})"] for name in inputs.readme_benches
            for row in bench_rows(inputs.benches[name])]
    machines: dict[str, list[str]] = {}
    for name in inputs.readme_benches:
        machines.setdefault(stamp_of(inputs.benches[name]).cpu, []).append(name)
    return "\n".join([
        *table(["benchmark", "goal", "measured", "met", "input"], rows),
        *(f"CPU of {', '.join(names)}: {cpu}." for cpu, names in machines.items()),
    ]).rstrip()
