"""``uservec run``: one experiment from one config file, written to one output folder.

Data's path reads top to bottom: prepare the dataset -> pretrain the encoder (P1 view) ->
evaluate next-item prediction beside the popularity baseline -> fit the tasks -> write
``report.json`` and ``report.md``. Export is a later stage: :mod:`uservec.pipeline` runs it on the
run folder and adds the bundle to the same report.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import uservec
from uservec.contract.fingerprint import code_version
from uservec.training import memory
from uservec.training.config import CorpusConfig, ExperimentConfig, config_to_dict
from uservec.training.data.dataset import PreparedDataset
from uservec.training.distributed import World, barrier, current_world
from uservec.training.environment import environment
from uservec.training.evaluation.plan import EvaluationPlan, plan_evaluation
from uservec.training.report.headline import headline
from uservec.training.report.writer import write_report
from uservec.training.run_dir import RunDir

if TYPE_CHECKING:
    from uservec.training.baselines.pooled import PooledRows
    from uservec.training.corpus_pretrain import PretrainCorpus

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


def prepare_stage(cfg: ExperimentConfig, run: RunDir) -> tuple[PreparedDataset, EvaluationPlan]:
    """The prepared data and every protocol split, both kept in the run folder.

    The splits are made here, once, before any training: a task the data cannot evaluate stops
    the run now, and pretraining, tasks, export and probes all read the same splits.
    """
    from uservec.training.data.prepare import prepare_run_dataset

    dataset = prepare_run_dataset(cfg.data, run)
    plan = plan_evaluation(cfg, dataset)
    run.save_plan(plan, cfg, dataset)
    return dataset, plan


def run_training(cfg: ExperimentConfig, out_dir: Path, resume: bool = True) -> TrainingRun:
    """Prepare, pretrain (P1) and fit every task (P2/P3); export is a later stage's business.

    Every stage writes into the run folder (:class:`RunDir`) what the next one reads.
    """
    run = RunDir(out_dir)
    run.write_config(cfg)  # the resolved config: what later stages rebuild the run from
    started = time.perf_counter()
    timings: dict[str, float] = {}

    memory.reset_peaks()
    t0 = time.perf_counter()
    with memory.stage("prepare"):
        dataset, plan = prepare_stage(cfg, run)
    barrier(current_world())  # data-parallel ranks read the prepared data now (pretrain_rank)
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
    view = plan.pretraining_view(dataset)
    if view is not dataset:
        report["pretraining_view"] = view.settings.get("restricted", {})
    corpus, pooled = corpus_inputs(cfg, dataset, plan)
    if corpus is not None:
        report["corpus"] = corpus.summary
    report["protocol_notes"] = protocol_notes(cfg, dataset, view)
    with memory.stage("pretrain"):
        report["pretrain"], report["next_item"] = _pretrain_and_evaluate(cfg, view, run, resume,
                                                                         corpus)
    timings["pretrain_s"] = time.perf_counter() - t0

    if cfg.tasks:
        from uservec.training.report.plots import plot_results
        from uservec.training.tasks import run_tasks

        t0 = time.perf_counter()
        with memory.stage("tasks"):
            report["tasks"] = run_tasks(cfg, dataset, run.encoder_path, out_dir, plan, pooled)
        report["plots"] = [
            str(p.relative_to(out_dir)) for p in plot_results(report["tasks"], out_dir)
        ]
        timings["tasks_s"] = time.perf_counter() - t0
    return TrainingRun(report, timings, started)


def corpus_inputs(cfg: ExperimentConfig, dataset: PreparedDataset, plan: EvaluationPlan
                  ) -> tuple[PretrainCorpus | None, dict[str, PooledRows]]:
    """A ``[pretrain.corpus]``'s part in the run: pretraining users (and auxiliary labels), and
    per ``label_tasks`` task its labelled users for the pooled baselines."""
    if cfg.pretrain.corpus is None:
        return None, {}
    from uservec.training.baselines.pooled import pooled_rows
    from uservec.training.corpus_pretrain import pretrain_corpus
    from uservec.training.data.corpus import load_corpus

    corpus = load_corpus(cfg.pretrain.corpus, cfg.data, dataset)
    tasks = {task.name: task for task in cfg.tasks}
    pooled = {}
    for name in cfg.pretrain.corpus.label_tasks:
        task, split = tasks[name], plan.profile[name]
        pooled[name] = pooled_rows(corpus.bags, corpus.users, str(task.attribute), task.buckets,
                                   split.labels.classes)
    return pretrain_corpus(cfg.pretrain.corpus, corpus, cfg.tasks), pooled


def pretrain_rank(cfg: ExperimentConfig, out_dir: Path, resume: bool, world: World) -> None:
    """A data-parallel rank other than 0: pretrain beside rank 0, then stop (distributed.py).

    Rank 0 prepares the data and the splits in the run folder first; this rank reads them.
    """
    from uservec.training.pretrain import pretrain

    barrier(world)
    run = RunDir(out_dir)
    dataset = run.load_dataset(mmap=cfg.data.chunk_rows > 0)
    plan = run.load_plan(cfg, dataset)
    if plan is None:
        raise RuntimeError(f"rank {world.rank}: {out_dir} holds no splits for this config")
    pretrain(plan.pretraining_view(dataset), cfg.model, cfg.pretrain, cfg.eval,
             run.pretrain_dir, seed=cfg.seed, resume=resume)


def finish_report(run: TrainingRun, out_dir: Path) -> dict[str, Any]:
    """Add the total time and the headline, write report.json / report.md; returns the report."""
    report, timings = run.report, run.timings
    timings["total_s"] = time.perf_counter() - run.started
    report["timings"] = {k: round(v, 1) for k, v in timings.items()}
    report["memory"] = {"peak_rss_mb": memory.peaks(), "measured": memory.peak_source()}
    report["headline"] = headline(report)
    write_report(report, out_dir)
    return report


def protocol_notes(
    cfg: ExperimentConfig, dataset: PreparedDataset, view: PreparedDataset
) -> list[str]:
    """The statements docs/protocols.md asks every report to make about how its numbers were
    made."""
    notes = []
    if view is not dataset:
        hidden = view.settings.get("restricted", {}).get("hidden_events", 0)
        notes.append(
            f"P1 is evaluated on the pretraining view, which lacks the {hidden} held-out target "
            "events of the P3 test users: each user's last two events of that view are the P1 "
            "validation and test targets."
        )
    corpus = cfg.pretrain.corpus
    if any(t.kind == "profile" for t in cfg.tasks) and (corpus is None
                                                        or corpus.include_task_users):
        notes.append(
            "P2 is transductive: pretraining saw every user's behaviour, test-fold users "
            "included, and never a label; the baselines fit nothing on test-fold users."
        )
    if corpus is not None:
        notes.append(corpus_note(corpus))
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


def corpus_note(corpus: CorpusConfig) -> str:
    """What a pretraining corpus lent the run, for the report."""
    seen = ("and every task user's behaviour (never a task user's label)"
            if corpus.include_task_users else "and no task user's behaviour")
    labels = (f"; its users' labels of {', '.join(corpus.label_tasks)} trained auxiliary heads "
              f"(weight {corpus.aux_weight:g})" if corpus.aux_weight > 0 and corpus.label_tasks
              else "; no label")
    pooled = (f". The pooled baselines (lr_pooled, lr_bal_pooled) train on every labelled "
              f"corpus user besides the fold's labelled rows ({', '.join(corpus.label_tasks)})"
              if corpus.label_tasks else "")
    return (f"Pretraining read the corpus {corpus.path} (items mapped by {corpus.by}) "
            f"{seen}{labels}{pooled}.")


def _pretrain_and_evaluate(
    cfg: ExperimentConfig, dataset: PreparedDataset, run: RunDir, resume: bool,
    corpus: PretrainCorpus | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pretrain on the P1 view and report P1 test metrics beside popularity."""
    from uservec.training.data.time_order import time_order
    from uservec.training.evaluation.next_item import evaluate_next_item, popularity_next_item
    from uservec.training.pretrain import pretrain

    result = pretrain(
        dataset, cfg.model, cfg.pretrain, cfg.eval, run.pretrain_dir, seed=cfg.seed,
        resume=resume, corpus=corpus,
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
        **result.objective,
        "time_order": time_order(dataset).to_json(),
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
