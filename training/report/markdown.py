"""``report.md``: the run report for people, one section per stage and one table per task.

The stage sections read the report's plain sections (dataset, pretraining, next-item, notes,
bundle, timings); the task tables read the typed task results, so each number is taken from the
object that computed it.
"""

from __future__ import annotations

from typing import Any

from uservec.training.evaluation.cross_domain_results import CrossDomainTaskResult
from uservec.training.evaluation.kinds import regime_label
from uservec.training.evaluation.profile_results import ProfileTaskResult, RegimeResult
from uservec.training.evaluation.ranking_eval import RANKING_METRICS
from uservec.training.evaluation.results import TaskResult, TaskResults
from uservec.training.evaluation.statistics import MeanSe, MeanStd


def render_markdown(report: dict[str, Any]) -> str:
    """The human-readable report: dataset, pretraining, next-item, then every task."""
    lines = [*_title(report), *_dataset(report["dataset"])]
    if report.get("pretrain"):
        lines += _pretraining(report["pretrain"])
    if report.get("next_item"):
        lines += _next_item(report["next_item"])
    notes = report.get("protocol_notes", [])
    if notes:
        lines += ["## Protocol notes", "", *(f"- {note}" for note in notes), ""]
    tasks: TaskResults | None = report.get("tasks")
    for name, task in ({} if tasks is None else tasks.tasks).items():
        lines += render_task(name, task)
    for plot in report.get("plots", []):
        lines += [f"![{plot}]({plot})", ""]
    if "bundle" in report:
        lines += [f"## Bundle\n\n`{report['bundle']['path']}` version "
                  f"`{report['bundle']['version']}`", ""]
    lines += [
        "## Timings (seconds)",
        "",
        ", ".join(f"{k} {v}" for k, v in report.get("timings", {}).items()),
        "",
        *memory_lines(report),
    ]
    return "\n".join(lines)


def memory_lines(report: dict[str, Any]) -> list[str]:
    """Peak resident memory per stage (``report.json`` ``memory``), for sizing a machine."""
    memory = report.get("memory") or {}
    peaks = memory.get("peak_rss_mb") or {}
    if not peaks:
        return []
    return ["## Peak memory (MiB)", "", f"Measured {memory.get('measured', '')}.", "",
            "| stage | peak RSS |", "|---|---:|",
            *(f"| {name} | {mb:.0f} |" for name, mb in peaks.items()), ""]


def _title(report: dict[str, Any]) -> list[str]:
    return [
        f"# uservec report: {report['config']['name']}",
        "",
        f"Created {report['created_at']} with uservec {report['code_version']}; "
        f"seed {report['config']['seed']}; data fingerprint "
        f"`{report['dataset']['fingerprint'][:16]}`.",
        "",
    ]


def _dataset(ds: dict[str, Any]) -> list[str]:
    per_user = ds["events_per_user"]
    return [
        "## Dataset",
        "",
        "| users | items | vocabulary | events | events/user (mean / median / max) |",
        "|---|---|---|---|---|",
        f"| {ds['users']} | {ds['items']} | {ds['vocabulary']} | {ds['events']} | "
        f"{per_user['mean']} / {per_user['median']} / {per_user['max']} |",
        "",
        "Events per domain: " + ", ".join(f"{k} {v}" for k, v in ds["domains"].items()),
        "",
    ]


def _pretraining(pre: dict[str, Any]) -> list[str]:
    return [
        "## Pretraining (NextItNet, next-item at every position)",
        "",
        f"{pre['parameters']} parameters; {pre['epochs_run']} epochs "
        f"(best {pre['best_epoch']}) in {pre['seconds']} s.",
        "",
    ]


def _next_item(nxt: dict[str, Any]) -> list[str]:
    k = nxt["k"]
    lines = [
        f"## Next-item prediction ({nxt['protocol']})",
        "",
        f"| method | HR@{k} | NDCG@{k} |",
        "|---|---|---|",
    ]
    for name, metrics in nxt["methods"].items():
        lines.append(f"| {name} | {_fmt(metrics[f'hr@{k}'])} | {_fmt(metrics[f'ndcg@{k}'])} |")
    return [*lines, "", f"NDCG@{k} ratio vs popularity: {nxt['ndcg_ratio_vs_popularity']}", ""]


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _pm(stat: MeanStd | MeanSe) -> str:
    spread = stat.std if isinstance(stat, MeanStd) else stat.se
    return f"{stat.mean:.4f} ± {spread:.4f}"


def _or_dash(value: object | None) -> str:
    return "-" if value is None else str(value)


def render_task(name: str, task: TaskResult) -> list[str]:
    """One table per task (and per label regime for profile tasks)."""
    if isinstance(task, CrossDomainTaskResult):
        return _cross_domain_task(name, task)
    lines: list[str] = []
    for regime, body in task.regimes.items():
        lines += _profile_regime(name, task, regime, body)
    for regime, reason in task.skipped_regimes.items():
        lines += [f"## Task {name} (P2 profile: {task.attribute}, {regime_label(regime)})", "",
                  f"Not evaluated: {reason}", ""]
    return lines


def _profile_regime(name: str, task: ProfileTaskResult, regime: str,
                    body: RegimeResult) -> list[str]:
    lines = [
        f"## Task {name} (P2 profile: {task.attribute}, {regime_label(regime)})",
        "",
        f"Classes: {len(task.classes)}; labelled users {task.labelled_users}; "
        f"strongest baseline: {body.strongest_baseline}.",
        "",
        "Networks are trained with class weights: macro-F1 reads their argmax as "
        "trained, accuracy their logits shifted by the log class prior (the last column "
        "shows the accuracy of the argmax as trained).",
        "",
        "| method | accuracy (mean ± std, 5 folds) | macro-F1 | trainable params | "
        "train seconds | accuracy, argmax as trained |",
        "|---|---|---|---|---|---|",
    ]
    for method, res in body.methods.items():
        as_trained = res.evaluation.decisions.get("as_trained")
        as_trained_cell = "-" if as_trained is None else _pm(
            MeanStd.of([scores["accuracy"] for scores in as_trained]))
        lines.append(
            f"| {method} | {_pm(res.metric('accuracy'))} | {_pm(res.metric('macro_f1'))} "
            f"| {_or_dash(res.trainable_parameters)} | {res.seconds} | {as_trained_cell} |"
        )
    return [*lines, ""]


def _cross_domain_task(name: str, task: CrossDomainTaskResult) -> list[str]:
    first = next(iter(task.methods.values()))
    keys = [first.evaluation.key(metric) for metric in RANKING_METRICS]
    lines = [
        f"## Task {name} (P3 cross-domain cold start into {task.target_domain})",
        "",
        f"Candidates: {task.candidates}; evaluated test users "
        f"{first.evaluation.evaluated_users} (left out: {first.evaluation.left_out_users}); "
        f"strongest baseline: {task.strongest_baseline}.",
        "",
        "| method | " + " | ".join(f"{k} (mean ± s.e.)" for k in keys)
        + " | trainable params | train seconds |",
        "|---|" + "---|" * (len(keys) + 2),
    ]
    for method, res in task.methods.items():
        cells = " | ".join(_pm(res.metric(metric)) for metric in RANKING_METRICS)
        lines.append(f"| {method} | {cells} | {_or_dash(res.trainable_parameters)} | "
                     f"{res.seconds} |")
    return [*lines, ""]
