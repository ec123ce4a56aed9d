"""``uservec run``: one experiment from one config file, written to one output folder.

Data's path reads top to bottom: prepare the dataset -> pretrain the encoder (P1 view) ->
evaluate next-item prediction beside the popularity baseline -> fit the tasks -> write
``report.json`` and ``report.md``. Export is a later stage: :mod:`uservec.pipeline` runs it on the
run folder and adds the bundle to the same report.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import uservec
from uservec.contract.fingerprint import code_version
from uservec.training.adapt import METHODS
from uservec.training.config import ExperimentConfig, config_to_dict
from uservec.training.data.dataset import PreparedDataset
from uservec.training.environment import environment
from uservec.training.protocols import pretraining_view
from uservec.training.run_dir import RunDir

log = logging.getLogger(__name__)

REPORT_SCHEMA_VERSION = 1


def dataset_stats(dataset: PreparedDataset) -> dict[str, Any]:
    """Sizes that a reader needs to judge every metric of the report."""
    lengths = dataset.lengths()
    per_domain = np.bincount(dataset.event_domain, minlength=len(dataset.domains))
    stats: dict[str, Any] = {
        "name": dataset.name,
        "fingerprint": dataset.fingerprint,
        "users": int(dataset.num_users),
        "items": len(dataset.catalog),
        "vocabulary": int(dataset.vocab.size),
        "events": int(dataset.num_events),
        "events_per_user": {
            "mean": round(float(lengths.mean()), 2) if len(lengths) else 0.0,
            "median": float(np.median(lengths)) if len(lengths) else 0.0,
            "max": int(lengths.max()) if len(lengths) else 0,
        },
        "domains": {name: int(n) for name, n in zip(dataset.domains, per_domain, strict=True)},
    }
    if dataset.users is not None:
        stats["user_attributes"] = [str(c) for c in dataset.users.columns]
    return stats


@dataclass
class TrainingRun:
    """What the training stages leave for later stages (export) and for the final report."""

    report: dict[str, Any]
    #: seconds per stage, in the order the stages ran
    timings: dict[str, float]
    started: float


def run_training(cfg: ExperimentConfig, out_dir: Path, resume: bool = True) -> TrainingRun:
    """Prepare, pretrain (P1) and fit every task (P2/P3); export is a later stage's business.

    Every stage writes into the run folder (:class:`RunDir`) what the next one reads.
    """
    from uservec.training.data.prepare import prepare_run_dataset

    run = RunDir(out_dir)
    run.write_config(cfg)  # the resolved config: what later stages rebuild the run from
    started = time.perf_counter()
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    dataset = prepare_run_dataset(cfg.data, run)
    timings["prepare_s"] = time.perf_counter() - t0
    log.info("dataset %s: %d users, %d events", dataset.name, dataset.num_users, dataset.num_events)

    report: dict[str, Any] = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "uservec_version": uservec.__version__,
        "code_version": code_version(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config_to_dict(cfg),
        "environment": environment(),
        "dataset": dataset_stats(dataset),
    }

    t0 = time.perf_counter()
    view = pretraining_view(cfg, dataset)
    if view is not dataset:
        report["pretraining_view"] = view.settings.get("restricted", {})
    report["protocol_notes"] = protocol_notes(cfg, dataset, view)
    report["pretrain"], report["next_item"] = _pretrain_and_evaluate(cfg, view, run, resume)
    timings["pretrain_s"] = time.perf_counter() - t0

    if cfg.tasks:
        from uservec.training.tasks import plot_results, run_tasks

        t0 = time.perf_counter()
        report["tasks"] = run_tasks(cfg, dataset, run.encoder_path, out_dir)
        report["plots"] = [
            str(p.relative_to(out_dir)) for p in plot_results(report["tasks"], out_dir)
        ]
        timings["tasks_s"] = time.perf_counter() - t0
    return TrainingRun(report, timings, started)


def finish_report(run: TrainingRun, out_dir: Path) -> dict[str, Any]:
    """Add the total time and the headline, write report.json / report.md; returns the report."""
    report, timings = run.report, run.timings
    timings["total_s"] = time.perf_counter() - run.started
    report["timings"] = {k: round(v, 1) for k, v in timings.items()}
    report["headline"] = _headline(report)
    write_report(report, out_dir)
    return report


def protocol_notes(
    cfg: ExperimentConfig, dataset: PreparedDataset, view: PreparedDataset
) -> list[str]:
    """The statements PROTOCOLS.md asks every report to make about how its numbers were made."""
    notes = []
    if view is not dataset:
        hidden = view.settings.get("restricted", {}).get("hidden_events", 0)
        notes.append(
            f"P1 is evaluated on the pretraining view, which lacks the {hidden} held-out target "
            "events of the P3 test users: each user's last two events of that view are the P1 "
            "validation and test targets."
        )
    if any(t.kind == "profile" for t in cfg.tasks):
        notes.append(
            "P2 is transductive: pretraining saw every user's behaviour, test-fold users "
            "included, and never a label; the baselines fit nothing on test-fold users."
        )
    targets = [str(t.target_domain) for t in cfg.tasks if t.kind == "cross_domain"]
    if targets:
        notes.append(
            f"P3 uses one backbone for every task ({', '.join(targets)}), pretrained on every "
            "event except the target-domain events of each target's test users (and, with a "
            "published split, of its validation users); per-target backbones are not used."
        )
    order = str(dataset.settings.get("info", {}).get("timestamps", ""))
    if order in ("file order", "position in line"):
        notes.append(
            f"The source files carry no timestamps: sequences follow {order}, so 'next item' "
            "means next in the file."
        )
    return notes


def _pretrain_and_evaluate(
    cfg: ExperimentConfig, dataset: PreparedDataset, run: RunDir, resume: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pretrain on the P1 view and report P1 test metrics beside popularity."""
    from uservec.training.evaluate import evaluate_next_item, popularity_next_item
    from uservec.training.pretrain import pretrain

    result = pretrain(
        dataset, cfg.model, cfg.pretrain, cfg.eval, run.pretrain_dir, seed=cfg.seed,
        resume=resume,
    )
    k = cfg.eval.k
    model_metrics = evaluate_next_item(
        result.encoder, result.head, dataset, "test", k=k, batch_size=cfg.eval.batch_size,
        max_len=cfg.model.max_len,
    )
    pop_metrics = popularity_next_item(dataset, "test", k=k)
    ndcg_key = f"ndcg@{k}"
    ratio = model_metrics[ndcg_key] / pop_metrics[ndcg_key] if pop_metrics[ndcg_key] else None
    pretrain_section = {
        "checkpoint": str(result.checkpoint),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "seconds": round(result.seconds, 1),
        "parameters": result.num_params,
        "stop_reason": result.stop_reason,
        "validation": result.val_metrics,
        "history": result.history,
    }
    next_item = {
        "protocol": "P1 leave-last-out, full ranking over all items",
        "k": k,
        "methods": {"nextitnet": model_metrics, "popularity": pop_metrics},
        "ndcg_ratio_vs_popularity": None if ratio is None else round(ratio, 3),
    }
    return pretrain_section, next_item


def _headline(report: dict[str, Any]) -> dict[str, Any]:
    nxt = report["next_item"]
    k = nxt["k"]
    headline: dict[str, Any] = {
        "dataset": report["dataset"]["name"],
        f"nextitnet_ndcg@{k}": round(nxt["methods"]["nextitnet"][f"ndcg@{k}"], 4),
        f"popularity_ndcg@{k}": round(nxt["methods"]["popularity"][f"ndcg@{k}"], 4),
        "ndcg_ratio": nxt["ndcg_ratio_vs_popularity"],
        "total_seconds": report["timings"]["total_s"],
    }
    for name, task in report.get("tasks", {}).get("tasks", {}).items():
        headline[name] = _task_headline(task)
    return headline


def _task_headline(task: dict[str, Any]) -> dict[str, Any]:
    """Adapter vs the strongest baseline on the task's main metric(s)."""
    if task["kind"] == "profile":
        regime = task["regimes"]["full"]
        methods = regime["methods"]
        out = {}
        for metric, base in regime["strongest_baseline"].items():
            out[metric] = {name: round(methods[name][metric]["mean"], 4)
                           for name in (*METHODS, base) if name in methods}
        return out
    methods = task["methods"]
    key = next(k for k in methods[next(iter(methods))] if k.startswith("ndcg@"))
    return {key: {name: round(m[key]["mean"], 4) for name, m in methods.items()}}


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    """Write ``report.json`` (machine-readable) and ``report.md`` (for people)."""
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=_json_default))
    (out_dir / "report.md").write_text(render_markdown(report))
    log.info("wrote %s and %s", out_dir / "report.json", out_dir / "report.md")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _pm(stat: dict[str, Any], spread: str) -> str:
    return f"{stat['mean']:.4f} ± {stat[spread]:.4f}"


def _render_task(name: str, task: dict[str, Any]) -> list[str]:
    """One table per task (and per label regime for profile tasks)."""
    lines: list[str] = []
    if task["kind"] == "profile":
        for regime, body in task["regimes"].items():
            lines += [
                f"## Task {name} (P2 profile: {task['attribute']}, {regime} labels)",
                "",
                f"Classes: {len(task['classes'])}; labelled users {task['labelled_users']}; "
                f"strongest baseline: {body['strongest_baseline']}.",
                "",
                "Networks are trained with class weights: macro-F1 reads their argmax as "
                "trained, accuracy their logits shifted by the log class prior (the last column "
                "shows the accuracy of the argmax as trained).",
                "",
                "| method | accuracy (mean ± std, 5 folds) | macro-F1 | trainable params | "
                "train seconds | accuracy, argmax as trained |",
                "|---|---|---|---|---|---|",
            ]
            for method, res in body["methods"].items():
                as_trained = res.get("decisions", {}).get("as_trained")
                lines.append(
                    f"| {method} | {_pm(res['accuracy'], 'std')} | {_pm(res['macro_f1'], 'std')} "
                    f"| {res.get('trainable_parameters', '-')} | {res.get('seconds', '-')} "
                    f"| {_pm(as_trained['accuracy'], 'std') if as_trained else '-'} |"
                )
            lines.append("")
        return lines
    methods = task["methods"]
    first = next(iter(methods.values()))
    keys = [k for k in first if "@" in k]
    lines += [
        f"## Task {name} (P3 cross-domain cold start into {task.get('target_domain', '?')})",
        "",
        f"Candidates: {task.get('candidates', '?')}; evaluated test users "
        f"{first.get('evaluated_users', '?')} (left out: {first.get('left_out_users', '?')}); "
        f"strongest baseline: {task.get('strongest_baseline')}.",
        "",
        "| method | " + " | ".join(f"{k} (mean ± s.e.)" for k in keys)
        + " | trainable params | train seconds |",
        "|---|" + "---|" * (len(keys) + 2),
    ]
    for method, res in methods.items():
        cells = " | ".join(_pm(res[k], "se") for k in keys)
        lines.append(f"| {method} | {cells} | {res.get('trainable_parameters', '-')} | "
                     f"{res.get('seconds', '-')} |")
    return [*lines, ""]


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def render_markdown(report: dict[str, Any]) -> str:
    """The human-readable report: dataset, pretraining and next-item tables."""
    ds = report["dataset"]
    lines = [
        f"# uservec report: {report['config']['name']}",
        "",
        f"Created {report['created_at']} with uservec {report['code_version']}; "
        f"seed {report['config']['seed']}; data fingerprint `{ds['fingerprint'][:16]}`.",
        "",
        "## Dataset",
        "",
        "| users | items | vocabulary | events | events/user (mean / median / max) |",
        "|---|---|---|---|---|",
        f"| {ds['users']} | {ds['items']} | {ds['vocabulary']} | {ds['events']} | "
        f"{ds['events_per_user']['mean']} / {ds['events_per_user']['median']} / "
        f"{ds['events_per_user']['max']} |",
        "",
        "Events per domain: " + ", ".join(f"{k} {v}" for k, v in ds["domains"].items()),
        "",
    ]
    pre = report.get("pretrain")
    if pre:
        lines += [
            "## Pretraining (NextItNet, next-item at every position)",
            "",
            f"{pre['parameters']} parameters; {pre['epochs_run']} epochs "
            f"(best {pre['best_epoch']}) in {pre['seconds']} s.",
            "",
        ]
    nxt = report.get("next_item")
    if nxt:
        k = nxt["k"]
        lines += [
            f"## Next-item prediction ({nxt['protocol']})",
            "",
            f"| method | HR@{k} | NDCG@{k} |",
            "|---|---|---|",
        ]
        for name, metrics in nxt["methods"].items():
            lines.append(f"| {name} | {_fmt(metrics[f'hr@{k}'])} | {_fmt(metrics[f'ndcg@{k}'])} |")
        lines += ["", f"NDCG@{k} ratio vs popularity: {nxt['ndcg_ratio_vs_popularity']}", ""]
    notes = report.get("protocol_notes", [])
    if notes:
        lines += ["## Protocol notes", "", *(f"- {note}" for note in notes), ""]
    tasks = report.get("tasks", {}).get("tasks", {})
    for name, task in tasks.items():
        lines += _render_task(name, task)
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
    ]
    return "\n".join(lines)
