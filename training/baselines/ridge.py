"""The P3 ``ridge`` baseline and the one lambda rule every ridge of the project is tuned by.

Ridge from the binary source bag (plus a penalised intercept column) to the binary bag of
candidate target items; lambda in half-decades from 1 to 10^4 by NDCG@10 on the P3 validation
users (docs/protocols.md#p3-cross-domain-cold-start), then refitted on every training user. The
strongest simple baseline.

The solver is chosen by shape, so memory grows with the bags' non-zeros and never with items
squared: while the smaller Gram matrix (users x users or features x features) has at most
:data:`EXACT_MAX` rows it is solved exactly (:class:`RidgeSolver`, at most ~130 MiB); above that a
rank-:data:`LOW_RANK` randomized SVD of the sparse design (:class:`LowRankRidge`) keeps
O(non-zeros + (users + features) x rank) memory. The exact Gram of 32k users x 24k items held
12.8 GB; its rank-256 form holds a few hundred MB.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp
from sklearn.utils.extmath import randomized_svd
from threadpoolctl import threadpool_limits

from uservec.training.evaluation.cross_domain_split import CrossDomainSplit
from uservec.training.evaluation.ranking import K
from uservec.training.evaluation.ranking_eval import ScoreFn, evaluate_ranking

logger = logging.getLogger(__name__)

#: largest Gram matrix (rows) solved exactly; above it the low-rank form (see module docstring)
EXACT_MAX = 4096
#: rank of the low-rank form: the singular directions a large ridge keeps
LOW_RANK = 256

#: P3 ridge penalties: half-decades from 1 to 10^4 (ties: the smaller lambda)
LAMBDA_GRID: tuple[float, ...] = tuple(float(10 ** (e / 2)) for e in range(9))


class RidgeModel(Protocol):
    """A ridge prepared for every lambda: queries enter a lambda-free basis once."""

    def basis(self, query: sp.csr_matrix) -> np.ndarray: ...

    def scores_from_basis(self, basis: np.ndarray, lam: float) -> np.ndarray: ...

    def scores(self, query: sp.csr_matrix, lam: float) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class RidgeSolver:
    """Ridge from binary source bags (+ penalised intercept column) to binary target bags.

    With design X (n, d) = [bags, 1] and targets Y (n, C), a query x scores
    x W with W = (X^T X + lam I)^-1 X^T Y = X^T (X X^T + lam I)^-1 Y. Both are solved through the
    eigendecomposition G = V diag(e) V^T of the smaller Gram matrix (dual n x n when there are
    fewer users than features, else primal d x d), so a new lambda costs matrix products only:
    scores = basis(x) diag(1 / (e + lam)) V^T Z, with Z = Y (dual) or X^T Y (primal), both sparse.
    """

    #: catalog columns of the source bags used as features
    columns: np.ndarray
    #: (m,) eigenvalues and (m, m) eigenvectors of the Gram matrix
    eigenvalues: np.ndarray
    vectors: np.ndarray
    #: (m, C) sparse right-hand side Z
    rhs: sp.csr_matrix
    #: (d, n) sparse X^T for the dual form (queries enter as x X^T); None for the primal form
    design_t: sp.csr_matrix | None

    def basis(self, query: sp.csr_matrix) -> np.ndarray:
        """(B, m) queries' source bags mapped into the eigenbasis (independent of lambda)."""
        features = _with_intercept(sp.csr_matrix(query[:, self.columns]))
        if self.design_t is not None:
            features = features @ self.design_t  # (B, n), mostly dense: finish in BLAS
        return np.asarray(features.toarray() @ self.vectors)

    def scores_from_basis(self, basis: np.ndarray, lam: float) -> np.ndarray:
        """(B, C) predicted target bags for queries already in the eigenbasis."""
        weighted = (basis / (self.eigenvalues + lam)) @ self.vectors.T  # (B, m)
        return np.asarray((self.rhs.T @ weighted.T).T)

    def scores(self, query: sp.csr_matrix, lam: float) -> np.ndarray:
        """(B, C) predicted target bags for the queries' (B, I) source bags."""
        return self.scores_from_basis(self.basis(query), lam)


@dataclass(frozen=True, eq=False)
class LowRankRidge:
    """Ridge on the top singular directions of the design: X ~ U diag(s) V^T (rank r).

    W = V diag(s / (s^2 + lam)) U^T Y, so a query x scores (x V) diag(s / (s^2 + lam)) (U^T Y).
    Directions with s^2 << lam carry almost no weight in the exact ridge either; the ones beyond
    rank r are dropped. Memory: V (d, r) and U^T Y (r, C), dense; nothing is d x d or n x n.
    """

    columns: np.ndarray
    #: (r,) singular values of the design
    singular: np.ndarray
    #: (d, r) right singular vectors
    right: np.ndarray
    #: (r, C) U^T Y
    projected: np.ndarray

    def basis(self, query: sp.csr_matrix) -> np.ndarray:
        """(B, r) queries' source bags on the right singular vectors."""
        features = _with_intercept(sp.csr_matrix(query[:, self.columns]))
        return np.asarray(features @ self.right)

    def scores_from_basis(self, basis: np.ndarray, lam: float) -> np.ndarray:
        """(B, C) predicted target bags for queries already in the basis."""
        shrink = self.singular / (self.singular**2 + lam)
        return np.asarray((basis * shrink) @ self.projected)

    def scores(self, query: sp.csr_matrix, lam: float) -> np.ndarray:
        """(B, C) predicted target bags for the queries' (B, I) source bags."""
        return self.scores_from_basis(self.basis(query), lam)


def _with_intercept(features: sp.csr_matrix) -> sp.csr_matrix:
    ones = sp.csr_matrix(np.ones((features.shape[0], 1)))
    return sp.hstack([features, ones], format="csr")


def fit_ridge(
    bags: sp.csr_matrix, targets: sp.csr_matrix, columns: np.ndarray | None = None
) -> RidgeModel:
    """Prepare the ridge solve for any lambda; ``bags`` (n, I) binary, ``targets`` (n, C).

    Exact (:class:`RidgeSolver`) while min(n, d) <= :data:`EXACT_MAX`, else low-rank
    (:class:`LowRankRidge`); the module docstring says why.
    """
    if columns is None:
        columns = np.flatnonzero(np.asarray(bags.sum(axis=0)).ravel() > 0)
    design = _with_intercept(sp.csr_matrix(bags[:, columns]))  # (n, d)
    targets = sp.csr_matrix(targets, dtype=np.float64)
    n, d = design.shape
    started = time.perf_counter()
    if min(n, d) > EXACT_MAX:
        logger.info("ridge: rank-%d randomized SVD of a %d x %d design (%d non-zeros)",
                    min(LOW_RANK, n, d), n, d, design.nnz)
        model: RidgeModel = _fit_low_rank(design, targets, columns)
    else:
        logger.info("ridge: exact %s eigendecomposition of a %d x %d design",
                    "dual" if n <= d else "primal", n, d)
        model = _fit_exact(design, targets, columns)
    logger.info("ridge: fitted in %.1fs", time.perf_counter() - started)
    return model


def _fit_exact(design: sp.csr_matrix, targets: sp.csr_matrix, columns: np.ndarray
               ) -> RidgeSolver:
    n, d = design.shape
    dual = n <= d
    gram = (design @ design.T) if dual else (design.T @ design)
    with threadpool_limits(limits=1):  # see logistic.fit_lr: threads only fight on shared cores
        eigenvalues, vectors = np.linalg.eigh(np.asarray(gram.todense()))
    rhs = targets if dual else sp.csr_matrix(design.T @ targets)
    return RidgeSolver(
        columns=columns,
        eigenvalues=eigenvalues,
        vectors=vectors,
        rhs=rhs,
        design_t=sp.csr_matrix(design.T) if dual else None,
    )


def _fit_low_rank(design: sp.csr_matrix, targets: sp.csr_matrix, columns: np.ndarray
                  ) -> LowRankRidge:
    rank = min(LOW_RANK, min(design.shape))
    left, singular, right_t = randomized_svd(design, rank, n_iter=4, random_state=0)
    projected = np.asarray((targets.T @ left).T)  # (r, C) = U^T Y, Y stays sparse
    return LowRankRidge(columns=columns, singular=singular, right=np.ascontiguousarray(right_t.T),
                        projected=projected)


def ridge_scorer(split: CrossDomainSplit, lam: float, solver: RidgeModel | None = None) -> ScoreFn:
    """Ridge baseline for one lambda, fitted on ``split.train_users``."""
    if solver is None:
        bags = split.source_matrix(split.train_users)
        solver = fit_ridge(bags, split.target_matrix(split.train_users))
    fitted = solver
    return lambda users: fitted.scores(split.source_matrix(users), lam)


def best_lambda(scores: Mapping[float, float]) -> float:
    """P3's rule for a penalty grid: the highest validation NDCG, ties -> the smaller lambda.

    One rule for every ridge the project tunes (the baseline, the probes, the P3 probe head), so
    "ridge on the vector" and "ridge on the bag" are compared under the same selection.
    """
    return float(max(scores, key=lambda lam: (scores[lam], -lam)))


def validation_ndcg(
    score_at: Callable[[float], ScoreFn], valid: CrossDomainSplit, k: int = K
) -> dict[float, float]:
    """Mean NDCG@k on ``valid``'s test users (the P3 validation users) at each lambda of the grid.

    ``score_at(lam)`` is the model at one penalty; the baseline and every probe tune through this
    one loop and :func:`best_lambda`, so their lambdas are chosen the same way.
    """
    return {lam: evaluate_ranking(score_at(lam), valid, k).summary("ndcg").mean
            for lam in LAMBDA_GRID}


def select_lambda(split: CrossDomainSplit, k: int = K) -> tuple[float, dict[str, float]]:
    """Lambda by NDCG@k on the validation users (treated like test users); ties -> smaller."""
    if split.validation is None:
        raise ValueError("the split has no validation round")
    valid = split.validation
    solver = fit_ridge(valid.source_matrix(valid.train_users),
                       valid.target_matrix(valid.train_users))
    # The validation users' eigenbasis rows do not depend on lambda: compute them once.
    basis = solver.basis(valid.source_matrix(valid.test_users))
    row_of = {int(user): row for row, user in enumerate(valid.test_users)}

    def score_at(lam: float) -> ScoreFn:
        return lambda users: solver.scores_from_basis(basis[[row_of[int(u)] for u in users]], lam)

    scores = validation_ndcg(score_at, valid, k)
    return best_lambda(scores), {f"{lam:g}": value for lam, value in scores.items()}
