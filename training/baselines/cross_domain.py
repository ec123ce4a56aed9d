"""Every P3 baseline of one task, on the plan's split."""

from __future__ import annotations

import logging
import time

from threadpoolctl import threadpool_limits

from uservec.training.baselines.cooccurrence import cooc_scorer, popularity_scorer
from uservec.training.baselines.ridge import ridge_scorer, select_lambda
from uservec.training.evaluation.cross_domain_results import CrossDomainMethodResult, RidgeChoice
from uservec.training.evaluation.cross_domain_split import CrossDomainSplit
from uservec.training.evaluation.ranking import K
from uservec.training.evaluation.ranking_eval import evaluate_ranking

logger = logging.getLogger(__name__)


def run_cross_domain_baselines(
    split: CrossDomainSplit, k: int = K
) -> dict[str, CrossDomainMethodResult]:
    """``popularity``, ``cooc`` and ``ridge`` (lambda on the validation users) on the test users."""
    results: dict[str, CrossDomainMethodResult] = {}
    start = time.perf_counter()
    evaluation = evaluate_ranking(popularity_scorer(split), split, k)
    results["popularity"] = CrossDomainMethodResult(
        evaluation, round(time.perf_counter() - start, 2))
    start = time.perf_counter()
    evaluation = evaluate_ranking(cooc_scorer(split), split, k)
    results["cooc"] = CrossDomainMethodResult(evaluation, round(time.perf_counter() - start, 2))
    start = time.perf_counter()
    with threadpool_limits(limits=1):
        lam, validation = select_lambda(split, k)
        evaluation = evaluate_ranking(ridge_scorer(split, lam), split, k)
    results["ridge"] = CrossDomainMethodResult(
        evaluation, round(time.perf_counter() - start, 2), ridge=RidgeChoice(lam, validation))
    for name, result in results.items():
        ndcg = result.metric("ndcg")
        logger.info("P3 %s -> %s %s: NDCG@%d %.4f ± %.4f", split.dataset.name,
                    split.target_domain, name, k, ndcg.mean, ndcg.se)
    return results
