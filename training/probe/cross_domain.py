"""P3 probes: the ``ridge`` baseline's model fitted on frozen source-history vectors."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from uservec.training.baselines.ridge import (
    best_lambda,
    fit_ridge,
    ridge_scorer,
    select_lambda,
    validation_ndcg,
)
from uservec.training.cross_domain_task import source_inputs, source_keep
from uservec.training.evaluation.cross_domain_split import CrossDomainSplit
from uservec.training.evaluation.ranking import K
from uservec.training.evaluation.ranking_eval import RankingEvaluation, ScoreFn, evaluate_ranking
from uservec.training.evaluation.statistics import PairedUsers, paired_users
from uservec.training.linear_probes import column_scale, vector_ridge_solver
from uservec.training.model import NextItNet, keep_domains
from uservec.training.probe.readouts import CROSS_DOMAIN_READOUTS, frozen_vectors

logger = logging.getLogger(__name__)


class VectorLookup:
    """Frozen source-history vectors of a fixed set of users, looked up by dataset user index."""

    def __init__(self, users: np.ndarray, vectors: np.ndarray) -> None:
        self.users = np.asarray(users)
        self.vectors = vectors

    def __call__(self, users: np.ndarray) -> np.ndarray:
        rows = np.searchsorted(self.users, users)
        if np.any(rows >= self.users.size) or np.any(self.users[rows] != users):
            raise KeyError("a user without a computed vector")
        return np.asarray(self.vectors[rows])


def source_vectors(encoder: NextItNet, split: CrossDomainSplit, max_len: int,
                   readout: str) -> VectorLookup:
    """Frozen vectors of the source histories of every user the split fits, tunes or tests on.

    The input is what a P3 head reads: source-domain events only (``source_keep``), latest
    ``max_len``.
    """
    parts = [split.train_users, split.test_users]
    if split.validation is not None:
        parts += [split.validation.train_users, split.validation.test_users]
    users = np.unique(np.concatenate(parts))
    keep = source_keep(split.dataset, split.target_domain)
    items = keep_domains(source_inputs(split, users, max_len), keep).numpy()
    return VectorLookup(users, frozen_vectors(encoder, items, readout).astype(np.float64))


#: fit(split) -> lam -> ScoreFn: whatever does not depend on lambda is fitted once per split
RidgeFamily = Callable[[CrossDomainSplit], Callable[[float], ScoreFn]]


def vector_ridge_family(vectors: VectorLookup) -> RidgeFamily:
    """:func:`~training.cross_domain_task.vector_ridge_solver` on ``split.train_users``' vectors,
    scoring ``split``'s candidates; the lambda-free part is computed once per split."""

    def fit(split: CrossDomainSplit) -> Callable[[float], ScoreFn]:
        solve = vector_ridge_solver(vectors(split.train_users),
                                    split.target_matrix(split.train_users))

        def at(lam: float) -> ScoreFn:
            weight, bias = solve(lam)
            return lambda users: vectors(users) @ weight.T + bias

        return at

    return fit


def bag_plus_vector_family(vectors: VectorLookup) -> RidgeFamily:
    """The ``ridge`` baseline on the source bag with the frozen vector appended.

    The vector block is standardised on ``split.train_users`` and scaled so that its mean
    squared norm equals the binary bag rows' (their mean item count): neither block dominates
    the shared penalty. Everything else is the baseline's solver (``fit_ridge``), whose
    eigendecomposition is computed once per split and serves every lambda.
    """

    def fit(split: CrossDomainSplit) -> Callable[[float], ScoreFn]:
        bags = split.source_matrix(split.train_users)
        mean, std = column_scale(vectors(split.train_users))
        scale = float(np.sqrt(max(bags.getnnz(axis=1).mean(), 1.0) / vectors.vectors.shape[1]))

        def features(users: np.ndarray) -> sp.csr_matrix:
            block = (vectors(users) - mean) / std * scale
            return sp.hstack([split.source_matrix(users), sp.csr_matrix(block)], format="csr")

        train = features(split.train_users)
        solver = fit_ridge(train, split.target_matrix(split.train_users),
                           columns=np.arange(train.shape[1]))
        return lambda lam: lambda users: solver.scores(features(users), lam)

    return fit


@dataclass(frozen=True, eq=False)
class RankingProbeRow:
    """One ridge probe on the P3 test users, and its per-user gain over ``ridge``."""

    evaluation: RankingEvaluation
    lam: float
    minus_ridge: PairedUsers | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: self.evaluation.summary(name).to_json()
                               for name in ("ndcg", "recall", "hr")}
        out["lambda"] = self.lam
        if self.minus_ridge is not None:
            out["minus_ridge"] = self.minus_ridge.to_json()
        return out


def _best_lambda(family: RidgeFamily, split: CrossDomainSplit, k: int) -> float:
    """Lambda by NDCG@k on the P3 validation round (ties: smaller), as the ridge baseline."""
    assert split.validation is not None
    return best_lambda(validation_ndcg(family(split.validation), split.validation, k))


def probe_cross_domain(encoder: NextItNet, split: CrossDomainSplit, max_len: int,
                       k: int = K) -> dict[str, RankingProbeRow]:
    """``ridge`` on the source bag vs the same ridge on each frozen readout and on the bag with
    the mean readout appended (P3 test users).

    Lambdas come from the P3 validation round for all, as the baseline's protocol says; the
    per-user NDCG@k differences are against ``ridge``.
    """
    if split.validation is None:
        raise ValueError("the P3 split has no validation round to tune on")
    lam, _ = select_lambda(split, k)
    ridge = evaluate_ranking(ridge_scorer(split, lam), split, k)
    out = {"ridge": RankingProbeRow(ridge, lam)}
    models: list[tuple[str, RidgeFamily]] = []
    for readout in CROSS_DOMAIN_READOUTS:
        vectors = source_vectors(encoder, split, max_len, readout)
        models.append((f"ridge-on-{readout}", vector_ridge_family(vectors)))
        if readout == "mean":
            models.append(("ridge-on-bag+mean", bag_plus_vector_family(vectors)))
    for name, family in models:
        best = _best_lambda(family, split, k)
        result = evaluate_ranking(family(split)(best), split, k)
        out[name] = RankingProbeRow(result, best, paired_users(result.per_user["ndcg"],
                                                               ridge.per_user["ndcg"]))
        logger.info("probe %s %s: NDCG@%d %.4f (ridge %.4f)", split.target_domain, name, k,
                    result.summary("ndcg").mean, ridge.summary("ndcg").mean)
    return out
