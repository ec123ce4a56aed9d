"""A P3 task: baselines and every method on the test users of the plan's split; the final model.

A P3 fit is already trained on every training user, so the final model is the evaluated model of
``final_method`` itself (fitted on the shared backbone).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from uservec.training.baselines.cross_domain import run_cross_domain_baselines
from uservec.training.comparison.final import TaskContext, save_final, summarise_fit
from uservec.training.comparison.served_cross_domain import (
    ServedRanking,
    evaluate_served_ranking,
)
from uservec.training.config import TaskConfig
from uservec.training.cross_domain_task import cross_domain_scorer, fit_cross_domain_task
from uservec.training.evaluation.cross_domain_results import (
    COMPARED_METRIC,
    CrossDomainMethodResult,
    CrossDomainTaskResult,
    compare_cross_domain,
)
from uservec.training.evaluation.cross_domain_split import CrossDomainSplit
from uservec.training.evaluation.fit_summary import FinalModel
from uservec.training.evaluation.kinds import CROSS_DOMAIN_BASELINES
from uservec.training.evaluation.ranking import tie_break_order
from uservec.training.evaluation.ranking_eval import RANKING_METRICS, evaluate_ranking
from uservec.training.evaluation.served import ServedBlock, ServedKind, served_block
from uservec.training.memory import stage
from uservec.training.task_artifact import RecommendOutputs
from uservec.training.task_selection import TaskFit
from uservec.training.wide.payload import ranking_payload

logger = logging.getLogger(__name__)


def run_cross_domain_task(task: TaskConfig, split: CrossDomainSplit, context: TaskContext,
                          task_dir: Path) -> tuple[CrossDomainTaskResult, TaskFit]:
    """Baselines and methods on the P3 test users; the final method's fit is the exported one."""
    settings, k = context.settings, context.k
    methods = run_cross_domain_baselines(split, k)
    final: TaskFit | None = None
    order = list(settings.methods)
    if settings.final_method not in order:
        order.append(settings.final_method)
    for method in order:
        is_final = method == settings.final_method
        with stage(f"p3 {split.target_domain}: {method}"):
            fit = fit_cross_domain_task(method, context.shared if is_final else context.pristine,
                                        split, settings, context.max_len, context.seed,
                                        task.name, shared=is_final, k=k)
        if is_final:
            final = fit
        if method in settings.methods:
            methods[method] = evaluate_fit(task.name, fit, split, context)
    assert final is not None
    served = evaluate_served_ranking(task.name, split, context, final,
                                     _ridge_lambda(methods["ridge"]))
    methods.update(served.results)
    if served.kind == "wide+deep":
        final = served.residual
    networks = (*settings.methods, *served.results)
    comparison = compare_cross_domain(methods, networks)
    result = CrossDomainTaskResult(
        target_domain=split.target_domain,
        k=k,
        split=split.summary(),
        candidates=split.num_candidates,
        methods=methods,
        strongest_baseline=comparison.strongest_baseline,
        paired_vs_baseline=comparison.paired_vs_baseline,
        paired_adapter_vs=comparison.paired_adapter_vs,
        final=save_final_model(final, split, context, task_dir, served),
        served=ranking_served_block(methods, comparison.strongest_baseline, served.kind),
        wide=served.wide_report,
    )
    return result, final


def _ridge_lambda(ridge: CrossDomainMethodResult) -> float:
    if ridge.ridge is None:
        raise ValueError("the ridge baseline carries no lambda")
    return ridge.ridge.lam


def ranking_served_block(methods: dict[str, CrossDomainMethodResult], strongest: str,
                         kind: ServedKind) -> ServedBlock:
    """The task's ``served`` block: per-user served values against the strongest baseline."""
    served = methods["served"].evaluation

    def values(result: CrossDomainMethodResult) -> dict[str, list[float]]:
        return {result.evaluation.key(m): result.evaluation.per_user[m].tolist()
                for m in RANKING_METRICS}

    return served_block(kind, values(methods["served"]),
                        {name: values(methods[name]) for name in CROSS_DOMAIN_BASELINES},
                        {served.key(COMPARED_METRIC): strongest})


def evaluate_fit(task_name: str, fit: TaskFit, split: CrossDomainSplit,
                 context: TaskContext) -> CrossDomainMethodResult:
    """A fitted method scored on the test users through the baselines' evaluation path."""
    evaluation = evaluate_ranking(cross_domain_scorer(fit, context.max_len), split, context.k)
    summary = summarise_fit(fit)
    logger.info("P3 %s %s: NDCG@%d %.4f (%d params, %.0fs)", task_name, fit.method, context.k,
                evaluation.summary("ndcg").mean, summary.trainable_parameters, summary.seconds)
    return CrossDomainMethodResult(evaluation, summary.seconds, fit=summary)


def save_final_model(fit: TaskFit, split: CrossDomainSplit, context: TaskContext,
                     task_dir: Path, served: ServedRanking | None = None) -> FinalModel:
    """``final.pt`` with what serving needs to rank: candidates, popularity and its ranking.

    With ``served`` it carries the served kind and, unless that is ``deep``, the wide part.
    """
    order = tie_break_order(split.popularity)
    kind = "deep" if served is None else served.kind
    wide = (None if served is None or kind == "deep"
            else ranking_payload(served.wide, served.temperature))
    outputs = RecommendOutputs(
        target_domain=split.target_domain,
        candidate_keys=tuple(str(key) for key in split.candidate_keys),
        candidate_vocab_ids=torch.from_numpy(split.candidate_vocab_ids.astype(np.int64)),
        candidate_popularity=torch.from_numpy(split.popularity.astype(np.int64)),
        popularity_ranking=torch.from_numpy(order.astype(np.int64)),
        served_kind=kind, wide=wide)
    return save_final(fit, context, task_dir, outputs,
                      trained_on_users=int(split.train_users.size))
