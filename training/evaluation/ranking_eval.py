"""The P3 evaluation path: every cross-domain method (baseline, network, probe) is scored here.

A method is a ``score_fn(users) -> (len(users), C)`` over the split's candidates;
:func:`evaluate_ranking` ranks them with the P3 tie rule and scores each evaluable test user with
:mod:`ranking`, so every number of a P3 table comes from one loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from uservec.training.evaluation.cross_domain_split import CrossDomainSplit
from uservec.training.evaluation.ranking import K, hit_rate_at_k, ndcg_at_k, recall_at_k, top_k
from uservec.training.evaluation.statistics import MeanSe

#: score_fn(users) -> (len(users), C) scores over ``split.candidates`` (higher = better)
ScoreFn = Callable[[np.ndarray], np.ndarray]

#: the per-user metrics, in report order
RANKING_METRICS = ("hr", "recall", "ndcg")


@dataclass(frozen=True, eq=False)
class RankingEvaluation:
    """HR/Recall/NDCG@k of one method per evaluable test user (mean ± s.e. over them)."""

    k: int
    #: (U,) raw ids of the evaluated users, in id order
    user_ids: np.ndarray
    #: metric name ("hr", "recall", "ndcg") -> (U,) values
    per_user: dict[str, np.ndarray]
    left_out_users: int

    def key(self, metric: str) -> str:
        """``ndcg@10``: the metric's name in reports."""
        return f"{metric}@{self.k}"

    def summary(self, metric: str) -> MeanSe:
        return MeanSe.of(self.per_user[metric])

    @property
    def evaluated_users(self) -> int:
        return int(self.user_ids.size)

    def to_json(self, per_user: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {self.key(m): self.summary(m).to_json() for m in RANKING_METRICS}
        out["evaluated_users"] = self.evaluated_users
        out["left_out_users"] = self.left_out_users
        if per_user:
            out["per_user"] = {"user_id": self.user_ids.tolist(),
                               **{self.key(m): self.per_user[m].tolist()
                                  for m in RANKING_METRICS}}
        return out


def evaluate_ranking(
    score_fn: ScoreFn, split: CrossDomainSplit, k: int = K, batch_size: int = 512
) -> RankingEvaluation:
    """HR/Recall/NDCG@k per evaluable test user (P3 ranking and tie rule)."""
    users = split.test_users
    hr, recall, ndcg = (np.zeros(users.size) for _ in range(3))
    # A bar on anything longer than a few batches: a large catalogue takes minutes here.
    starts = tqdm(range(0, users.size, batch_size), desc="P3 ranking", unit="batch",
                  leave=False, mininterval=2.0, disable=users.size <= 4 * batch_size)
    for start in starts:
        batch = users[start : start + batch_size]
        scores = np.asarray(score_fn(batch), dtype=np.float64)
        if scores.shape != (batch.size, split.num_candidates):
            raise ValueError(
                f"score_fn returned {scores.shape}, expected {(batch.size, split.num_candidates)}"
            )
        ranked = top_k(scores, split.popularity, k)
        for row, user in enumerate(batch):
            truth = split.ground_truth(int(user))
            pos = start + row
            hr[pos] = hit_rate_at_k(ranked[row], truth, k)
            recall[pos] = recall_at_k(ranked[row], truth, k)
            ndcg[pos] = ndcg_at_k(ranked[row], truth, k)
    return RankingEvaluation(k, split.dataset.user_ids[users],
                             {"hr": hr, "recall": recall, "ndcg": ndcg},
                             int(split.left_out_users.size))


def evaluate_cross_domain(
    score_fn: ScoreFn, split: CrossDomainSplit, k: int = K, batch_size: int = 512
) -> dict[str, Any]:
    """:func:`evaluate_ranking` as JSON: ``{"ndcg@k": {"mean", "se"}, ..., "per_user": ...}``."""
    return evaluate_ranking(score_fn, split, k, batch_size).to_json()
