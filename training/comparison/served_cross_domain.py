"""The served cross-domain head: wide, deep or wide+deep, chosen on the P3 validation users.

* ``wide``: reduced-rank ridge from the source bag to the candidates
  (:mod:`training.wide.ranking`), at the ridge baseline's lambda;
* ``deep``: the final method's fit (the adapter), as evaluated beside the baselines;
* ``wide+deep``: the same method trained as a residual on the wide part's out-of-fold scores,
  scaled into logits by a temperature fitted on those scores.

Each is scored on the validation round (its wide part fitted without the validation users; the
networks early-stop there), the best is served (a network kind must win by one standard error of
the wide part's per-user validation NDCG). The test users never enter a choice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from uservec.training.comparison.final import TaskContext
from uservec.training.comparison.served_profile import best_validation
from uservec.training.cross_domain_task import (
    ResidualScores,
    cross_domain_scorer,
    fit_cross_domain_task,
    source_keep,
)
from uservec.training.evaluation.bags import binary_matrix, event_users
from uservec.training.evaluation.cross_domain_results import CrossDomainMethodResult
from uservec.training.evaluation.cross_domain_split import CrossDomainSplit
from uservec.training.evaluation.ranking_eval import evaluate_ranking
from uservec.training.evaluation.served import ServedKind, choose_kind, one_standard_error
from uservec.training.task_selection import TaskFit
from uservec.training.wide.ranking import (
    RankingWide,
    calibrate_temperature,
    fit_ranking_wide,
    full_ridge_scores,
    out_of_fold_scores,
)

logger = logging.getLogger(__name__)


def source_bags(split: CrossDomainSplit, users: np.ndarray) -> sp.csr_matrix:
    """(N, V) binary bags of the users' source events over vocabulary ids."""
    dataset = split.dataset
    users = np.asarray(users, dtype=np.int64)
    row_of_user = np.full(dataset.num_users, -1, dtype=np.int64)
    row_of_user[users] = np.arange(users.size)
    rows = row_of_user[event_users(dataset)]
    keep = split.source_events & (rows >= 0)
    return binary_matrix(rows[keep], dataset.items[keep], (users.size, dataset.vocab.size))


def source_columns(split: CrossDomainSplit) -> np.ndarray:
    """Vocabulary ids the wide part reads: source-domain items (no reserved id, no target)."""
    return np.flatnonzero(source_keep(split.dataset, split.target_domain).numpy())


@dataclass(frozen=True, eq=False)
class ServedRanking:
    """The chosen kind, each kind's test result, and what the final model needs."""

    kind: ServedKind
    validation: dict[ServedKind, float]
    results: dict[str, CrossDomainMethodResult]
    wide: RankingWide
    temperature: float
    residual: TaskFit
    #: the wide part against the untruncated ridge (rank, size, test NDCG of both)
    wide_report: dict[str, Any]


def _wide_parts(split: CrossDomainSplit, lam: float) -> tuple[RankingWide, np.ndarray,
                                                               sp.csr_matrix]:
    """The truncated ridge on ``split.train_users``, their out-of-fold scores and targets."""
    bags = source_bags(split, split.train_users)
    seen = np.flatnonzero(np.asarray(bags.sum(axis=0)).ravel() > 0)
    columns = np.intersect1d(source_columns(split), seen)
    targets = split.target_matrix(split.train_users)
    wide = fit_ranking_wide(bags, targets, lam, columns)
    return wide, out_of_fold_scores(bags, targets, lam, columns), targets


def _scorer(split: CrossDomainSplit, wide: RankingWide) -> Callable[[np.ndarray], np.ndarray]:
    return lambda users: wide.scores(source_bags(split, users))


def evaluate_served_ranking(task_name: str, split: CrossDomainSplit, context: TaskContext,
                            deep: TaskFit, lam: float) -> ServedRanking:
    """Fit wide and wide+deep, choose the served kind on validation, score each on the test."""
    assert split.validation is not None
    valid, k, start = split.validation, context.k, time.perf_counter()
    valid_wide, valid_oof, valid_targets = _wide_parts(valid, lam)
    temperature = calibrate_temperature(valid_oof, valid_targets)
    valid_eval = evaluate_ranking(_scorer(valid, valid_wide), valid, k)
    wide, oof, _ = _wide_parts(split, lam)
    wide_seconds = time.perf_counter() - start
    offsets = ResidualScores(
        tune=temperature * valid_oof,
        valid=temperature * valid_wide.scores(source_bags(valid, valid.test_users)),
        refit=temperature * oof)
    residual = fit_cross_domain_task(deep.method, context.pristine, split, context.settings,
                                     context.max_len, context.seed, task_name, k=k,
                                     residual=offsets)
    ndcg = valid_eval.per_user["ndcg"]
    validation: dict[ServedKind, float] = {
        "wide": float(ndcg.mean()), "deep": best_validation(deep),
        "wide+deep": best_validation(residual)}
    kind = choose_kind(validation, one_standard_error(ndcg))
    logger.info("P3 %s: served %s (validation NDCG %s; wide rank %d, temperature %g)", task_name,
                kind, {n: round(v, 4) for n, v in validation.items()}, wide.rank, temperature)
    wide_test, deep_test = _scorer(split, wide), cross_domain_scorer(deep, context.max_len)
    residual_test = cross_domain_scorer(residual, context.max_len)
    scorers: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "wide": wide_test, "deep": deep_test,
        "wide+deep": lambda users: temperature * wide_test(users) + residual_test(users)}
    results = {name: CrossDomainMethodResult(evaluate_ranking(scorers[name], split, k),
                                             round(wide_seconds + (residual.seconds
                                                                   if "deep" in name else 0), 1))
               for name in ("wide", "wide+deep")}
    results["served"] = CrossDomainMethodResult(evaluate_ranking(scorers[kind], split, k), 0.0)
    report = _wide_report(split, wide, lam, results["wide"])
    return ServedRanking(kind, validation, results, wide, temperature, residual, report)


def _wide_report(split: CrossDomainSplit, wide: RankingWide, lam: float,
                 truncated: CrossDomainMethodResult) -> dict[str, Any]:
    """The truncated ridge's size and test NDCG beside the full ridge on the same bags."""
    full = full_ridge_scores(source_bags(split, split.train_users),
                             split.target_matrix(split.train_users), lam, source_columns(split))
    full_eval = evaluate_ranking(lambda users: full(source_bags(split, users)), split,
                                 truncated.evaluation.k)
    return {"rank": wide.rank, "float32_bytes": wide.float32_bytes, "lambda": lam,
            "ndcg": truncated.metric("ndcg").mean,
            "full_ridge_ndcg": full_eval.summary("ndcg").mean}
