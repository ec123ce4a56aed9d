"""The few numbers ``uservec run`` prints when it ends: P1 against popularity, and each task's
networks against its strongest baseline."""

from __future__ import annotations

from typing import Any

from uservec.training.choices import METHODS
from uservec.training.evaluation.cross_domain_results import CrossDomainTaskResult
from uservec.training.evaluation.kinds import FULL_REGIME
from uservec.training.evaluation.results import TaskResult, TaskResults


def headline(report: dict[str, Any]) -> dict[str, Any]:
    """``report["headline"]``: dataset, P1 NDCG beside popularity, time, and every task."""
    nxt = report["next_item"]
    k = nxt["k"]
    out: dict[str, Any] = {
        "dataset": report["dataset"]["name"],
        f"nextitnet_ndcg@{k}": round(nxt["methods"]["nextitnet"][f"ndcg@{k}"], 4),
        f"popularity_ndcg@{k}": round(nxt["methods"]["popularity"][f"ndcg@{k}"], 4),
        "ndcg_ratio": nxt["ndcg_ratio_vs_popularity"],
        "total_seconds": report["timings"]["total_s"],
    }
    tasks: TaskResults | None = report.get("tasks")
    for name, task in ({} if tasks is None else tasks.tasks).items():
        out[name] = task_headline(task)
    return out


def task_headline(task: TaskResult) -> dict[str, Any]:
    """Each network and the served head vs the strongest baseline on the main metric(s)."""
    if isinstance(task, CrossDomainTaskResult):
        key = task.metric_key
        return {key: {name: round(m.metric("ndcg").mean, 4) for name, m in task.methods.items()}}
    regime = task.regimes[FULL_REGIME]
    methods = regime.methods
    return {metric: {name: round(methods[name].metric(metric).mean, 4)
                     for name in (*METHODS, "served", base) if name in methods}
            for metric, base in regime.strongest_baseline.items()}
