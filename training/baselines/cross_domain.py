"""Every P3 baseline of one task, on the plan's split."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from threadpoolctl import threadpool_limits

from uservec.training.baselines.cooccurrence import cooc_scorer, popularity_scorer
from uservec.training.baselines.ridge import ridge_scorer, select_lambda
from uservec.training.evaluation.cross_domain_results import CrossDomainMethodResult, RidgeChoice
from uservec.training.evaluation.cross_domain_split import CrossDomainSplit
from uservec.training.evaluation.ranking import K
from uservec.training.evaluation.ranking_eval import RankingEvaluation, evaluate_ranking
from uservec.training.memory import stage

logger = logging.getLogger(__name__)


def run_cross_domain_baselines(
    split: CrossDomainSplit, k: int = K
) -> dict[str, CrossDomainMethodResult]:
    """``popularity``, ``cooc`` and ``ridge`` (lambda on the validation users) on the test users.

    Each baseline is a memory stage (``p3 <target>: <name>``) of the run's report.
    """
    target = split.target_domain
    results: dict[str, CrossDomainMethodResult] = {}
    with stage(f"p3 {target}: popularity"):
        results["popularity"] = _timed(lambda: (evaluate_ranking(popularity_scorer(split),
                                                                 split, k), None))
    with stage(f"p3 {target}: cooc"):
        results["cooc"] = _timed(lambda: (evaluate_ranking(cooc_scorer(split), split, k), None))
    with stage(f"p3 {target}: ridge"), threadpool_limits(limits=1):
        results["ridge"] = _timed(lambda: _ridge(split, k))
    for name, result in results.items():
        ndcg = result.metric("ndcg")
        logger.info("P3 %s -> %s %s: NDCG@%d %.4f ± %.4f (%.1fs)", split.dataset.name,
                    target, name, k, ndcg.mean, ndcg.se, result.seconds)
    return results


def _ridge(split: CrossDomainSplit, k: int) -> tuple[RankingEvaluation, RidgeChoice]:
    lam, validation = select_lambda(split, k)
    logger.info("P3 %s ridge: lambda %g chosen on the validation users; refitting",
                split.target_domain, lam)
    return evaluate_ranking(ridge_scorer(split, lam), split, k), RidgeChoice(lam, validation)


def _timed(fit: Callable[[], tuple[RankingEvaluation, RidgeChoice | None]]
           ) -> CrossDomainMethodResult:
    start = time.perf_counter()
    evaluation, ridge = fit()
    return CrossDomainMethodResult(evaluation, round(time.perf_counter() - start, 2), ridge=ridge)
