"""The P3 ``popularity`` and ``cooc`` baselines, fitted on training users
(docs/protocols.md#p3-cross-domain-cold-start)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from uservec.training.evaluation.cross_domain_split import CrossDomainSplit
from uservec.training.evaluation.ranking_eval import ScoreFn


def popularity_scorer(split: CrossDomainSplit) -> ScoreFn:
    """Training users per candidate, the same for every user."""
    scores = split.popularity.astype(np.float64)
    return lambda users: np.broadcast_to(scores, (len(users), scores.size))


def source_features(split: CrossDomainSplit) -> tuple[sp.csr_matrix, np.ndarray]:
    """Binary source bags of the training users, restricted to items they have."""
    bags = split.source_matrix(split.train_users)
    columns = np.flatnonzero(np.asarray(bags.sum(axis=0)).ravel() > 0)
    return sp.csr_matrix(bags[:, columns]), columns


def cooc_scorer(split: CrossDomainSplit) -> ScoreFn:
    """score(t) = sum over the user's distinct source items s of n(s, t) / n(s)."""
    bags, columns = source_features(split)
    n_s = np.asarray(bags.sum(axis=0)).ravel()  # (S,) training users with s
    n_st = (bags.T @ split.target_matrix(split.train_users)).tocsr()  # (S, C)
    conditional = sp.diags(1.0 / n_s) @ n_st

    def score(users: np.ndarray) -> np.ndarray:
        query = split.source_matrix(users)[:, columns]
        return np.asarray((query @ conditional).todense())

    return score
