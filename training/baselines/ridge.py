"""The P3 ``ridge`` baseline and the one lambda rule every ridge of the project is tuned by.

Ridge from the binary source bag (plus a penalised intercept column) to the binary bag of
candidate target items; lambda in half-decades from 1 to 10^4 by NDCG@10 on the P3 validation
users (docs/protocols.md#p3-cross-domain-cold-start), then refitted on every training user. The
strongest simple baseline.

The solver is chosen by shape, so memory grows with the bags' non-zeros and never with items
squared: while the smaller Gram matrix (users x users or features x features) has at most
:data:`EXACT_MAX` rows it is solved exactly (:class:`RidgeSolver`, at most ~130 MiB); above that
the Gram matrix is approximated as rank :data:`LOW_RANK` (a randomized SVD of the sparse design)
plus a diagonal and solved by Woodbury (:class:`LowRankRidge`), in O(non-zeros + features x rank)
memory. The exact Gram of 32k users x 24k items held 12.8 GB; on generated data of 12k users the
low-rank form scored NDCG@10 0.795 beside the exact 0.8015 with half the memory
(``uservec bench --scaling baselines``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

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

    def basis(self, query: sp.csr_matrix) -> Any: ...

    def scores_from_basis(self, basis: Any, lam: float) -> np.ndarray: ...

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
    """Ridge with the Gram matrix approximated as low rank plus diagonal, solved by Woodbury.

    G = X^T X ~ V diag(s^2) V^T + R, with V, s the top-r right singular vectors and values of the
    design and R the diagonal of what they leave (diag(G) - (V^2) s^2). With D = R + lam I,
    (G + lam I)^-1 = D^-1 - D^-1 V K^-1 V^T D^-1, K = diag(1 / s^2) + V^T D^-1 V (r x r), and a
    query x scores x (G + lam I)^-1 M, M = X^T Y (sparse). The top directions are solved exactly
    and each item's own co-occurrences with the targets are kept through R; only the coupling
    between items beyond rank r is dropped. At r = rank(X) it is the exact ridge. Memory: V (d, r),
    M (its non-zeros) and per lambda an (r, C) block; nothing is d x d or n x n.
    """

    columns: np.ndarray
    #: (r,) singular values of the design
    singular: np.ndarray
    #: (d, r) right singular vectors
    right: np.ndarray
    #: (d,) diagonal of the Gram matrix left out by the rank-r part
    residual: np.ndarray
    #: (d, C) sparse X^T Y
    rhs: sp.csr_matrix
    #: lambda -> (D^-1 (d,), K^-1 (r, r), V^T D^-1 M (r, C)); filled as lambdas are asked for
    cache: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)

    def basis(self, query: sp.csr_matrix) -> sp.csr_matrix:
        """(B, d) queries' features (sparse; the lambda-dependent work is in the scores)."""
        return _with_intercept(sp.csr_matrix(query[:, self.columns]))

    def _solve(self, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if lam not in self.cache:
            inverse_d = 1.0 / (self.residual + lam)  # (d,)
            scaled = self.right * inverse_d[:, None]  # (d, r) = D^-1 V
            kernel = np.diag(1.0 / np.maximum(self.singular, 1e-12) ** 2) + self.right.T @ scaled
            projected = np.asarray((self.rhs.T @ scaled).T)  # (r, C) = V^T D^-1 M
            self.cache[lam] = (inverse_d, np.linalg.inv(kernel), projected)
        return self.cache[lam]

    def scores_from_basis(self, basis: sp.csr_matrix, lam: float) -> np.ndarray:
        """(B, C) predicted target bags for queries already in the basis."""
        inverse_d, kernel_inverse, projected = self._solve(lam)
        weighted = sp.csr_matrix(basis @ sp.diags(inverse_d))  # (B, d) = x D^-1
        low = np.asarray(weighted @ self.right) @ kernel_inverse  # (B, r)
        return np.asarray((weighted @ self.rhs).todense()) - low @ projected

    def scores(self, query: sp.csr_matrix, lam: float) -> np.ndarray:
        """(B, C) predicted target bags for the queries' (B, I) source bags."""
        return self.scores_from_basis(self.basis(query), lam)

    def _apply_inverse(self, z: np.ndarray, lam: float) -> np.ndarray:
        """(G + lam I)^-1 z for (d, k) ``z``, by Woodbury."""
        inverse_d, kernel_inverse, _ = self._solve(lam)
        scaled = self.right * inverse_d[:, None]  # (d, r) = D^-1 V
        return z * inverse_d[:, None] - scaled @ (kernel_inverse @ (scaled.T @ z))

    def weights_matvec(self, x: np.ndarray, lam: float) -> np.ndarray:
        """W @ x for (C, k) ``x``, W = (G + lam I)^-1 M (d, C), never formed."""
        return self._apply_inverse(np.asarray(self.rhs @ x), lam)

    def weights_rmatvec(self, y: np.ndarray, lam: float) -> np.ndarray:
        """W.T @ y for (d, k) ``y`` (G is symmetric)."""
        return np.asarray(self.rhs.T @ self._apply_inverse(y, lam))


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
    _, singular, right_t = randomized_svd(design, rank, n_iter=4, random_state=0)
    right = np.ascontiguousarray(right_t.T)  # (d, r)
    gram_diagonal = np.asarray(design.multiply(design).sum(axis=0)).ravel()  # (d,)
    residual = np.maximum(gram_diagonal - (right**2) @ singular**2, 0.0)
    return LowRankRidge(columns=columns, singular=singular, right=right, residual=residual,
                        rhs=sp.csr_matrix(design.T @ targets))


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
