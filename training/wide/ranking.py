"""The wide part of a cross-domain head: ridge from the source bag to the target items, kept small.

The P3 ``ridge`` baseline (:mod:`training.baselines.ridge`) is the strongest simple model; its
solution W (source items + intercept, candidates) is dense and far too large to ship (tens of
thousands squared). :func:`fit_ranking_wide` keeps its best rank-r approximation
``W ~ left @ right`` (randomized SVD through the solver's factors, never forming W), with r as
large as ``byte_budget`` allows in float32, so a query costs ``bag @ left`` (an r-dimensional
vector) and ``right.T`` are r-dimensional item vectors: an inner-product index serves it as it
serves the network's scores. :func:`out_of_fold_scores` gives training users' scores from fits
that never saw them, so a residual network learns on honest wide scores::

    wide = fit_ranking_wide(bags, targets, lam, columns)
    scores = wide.scores(bags_of_test_users)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from uservec.training.baselines.ridge import LowRankRidge, RidgeModel, RidgeSolver, fit_ridge

#: largest rank kept, and the float32 bytes a wide part may take in the bundle
MAX_RANK = 256
BYTE_BUDGET = 32 * 2**20
#: oversampling and power iterations of the randomized SVD
_OVERSAMPLE, _POWER_ITERATIONS = 16, 3
#: folds of the cross-fitting that gives training users out-of-fold scores
CROSS_FIT_FOLDS = 3
#: temperatures tried when calibrating ridge scores as softmax logits
TEMPERATURES: tuple[float, ...] = tuple(float(t) for t in np.geomspace(1.0, 1000.0, 13))


@dataclass(frozen=True, eq=False)
class RankingWide:
    """Scores = [bag[:, columns], 1] @ left @ right (rank r)."""

    #: (d,) bag columns read (vocabulary ids of source items)
    columns: np.ndarray
    #: (d + 1, r) source side (last row: intercept) and (r, C) candidate side
    left: np.ndarray
    right: np.ndarray
    lam: float

    @property
    def rank(self) -> int:
        return int(self.right.shape[0])

    @property
    def float32_bytes(self) -> int:
        return 4 * (self.left.size + self.right.size)

    def query(self, bags: sp.csr_matrix) -> np.ndarray:
        """(N, r) the users' source bags mapped through ``left``."""
        x = sp.csr_matrix(bags[:, self.columns], dtype=np.float64)
        x.data[:] = 1.0
        return np.asarray(x @ self.left[:-1]) + self.left[-1]

    def scores(self, bags: sp.csr_matrix) -> np.ndarray:
        """(N, C) predicted target bags."""
        return self.query(bags) @ self.right


def _operators(solver: RidgeModel, lam: float
               ) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """W @ x and W.T @ y for the ridge solution, lazily (W is never formed).

    Exact solver: W = L diag(1 / (e + lam)) V.T Z. Low-rank solver: W = (G + lam I)^-1 X^T Y
    with G low rank plus diagonal, applied by Woodbury (``LowRankRidge.weights_matvec``).
    """
    if isinstance(solver, LowRankRidge):
        low_rank = solver
        return ((lambda x: low_rank.weights_matvec(x, lam)),
                (lambda y: low_rank.weights_rmatvec(y, lam)))
    assert isinstance(solver, RidgeSolver)
    inverse = 1.0 / (solver.eigenvalues + lam)
    vectors, rhs, design_t = solver.vectors, solver.rhs, solver.design_t

    def left(inner: np.ndarray) -> np.ndarray:  # L @ inner
        mapped = vectors @ inner
        return np.asarray(design_t @ mapped) if design_t is not None else mapped

    def left_t(outer: np.ndarray) -> np.ndarray:  # L.T @ outer
        if design_t is not None:
            outer = np.asarray(design_t.T @ outer)
        return vectors.T @ outer

    def matvec(x: np.ndarray) -> np.ndarray:
        return left(inverse[:, None] * (vectors.T @ np.asarray(rhs @ x)))

    def rmatvec(y: np.ndarray) -> np.ndarray:
        return np.asarray(rhs.T @ (vectors @ (inverse[:, None] * left_t(y))))

    return matvec, rmatvec


def rank_for(rows: int, columns: int, byte_budget: int = BYTE_BUDGET,
             max_rank: int = MAX_RANK) -> int:
    """The largest rank whose float32 factors (rows + columns) x r fit ``byte_budget``."""
    return max(1, min(max_rank, byte_budget // (4 * (rows + columns)), rows, columns))


def fit_ranking_wide(bags: sp.csr_matrix, targets: sp.csr_matrix, lam: float,
                     columns: np.ndarray, byte_budget: int = BYTE_BUDGET,
                     max_rank: int = MAX_RANK, seed: int = 0) -> RankingWide:
    """Ridge at ``lam`` from binary ``bags[:, columns]`` to ``targets``, truncated to rank r."""
    with threadpool_limits(limits=1):
        solver = fit_ridge(bags, targets, columns)
        matvec, rmatvec = _operators(solver, lam)
        n_rows, n_cols = columns.size + 1, targets.shape[1]
        rank = rank_for(n_rows, n_cols, byte_budget, max_rank)
        width = min(rank + _OVERSAMPLE, n_rows, n_cols)
        omega = np.random.default_rng(seed).standard_normal((n_cols, width))
        basis, _ = np.linalg.qr(matvec(omega))
        for _ in range(_POWER_ITERATIONS):
            back, _ = np.linalg.qr(rmatvec(basis))
            basis, _ = np.linalg.qr(matvec(back))
        small = rmatvec(basis).T  # (width, C) = basis.T @ W
        u, s, vt = np.linalg.svd(small, full_matrices=False)
    rank = min(rank, s.size)
    left = (basis @ u[:, :rank]) * s[:rank]
    return RankingWide(np.asarray(columns), left, vt[:rank], lam)


def full_ridge_scores(bags: sp.csr_matrix, targets: sp.csr_matrix, lam: float,
                      columns: np.ndarray) -> Callable[[sp.csr_matrix], np.ndarray]:
    """The untruncated ridge at ``lam`` (what the wide part approximates), as a scorer."""
    with threadpool_limits(limits=1):
        solver = fit_ridge(bags, targets, columns)
    return lambda query: solver.scores(query, lam)


def out_of_fold_scores(bags: sp.csr_matrix, targets: sp.csr_matrix, lam: float,
                       columns: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, C) full-ridge scores of each row from a fit on the other folds' rows."""
    n = bags.shape[0]
    order = np.random.default_rng(seed).permutation(n)
    out = np.zeros(targets.shape)
    for held in np.array_split(order, CROSS_FIT_FOLDS):
        kept = np.setdiff1d(np.arange(n), held)
        scorer = full_ridge_scores(bags[kept], targets[kept], lam, columns)
        with threadpool_limits(limits=1):
            out[held] = scorer(bags[held])
    return out


def calibrate_temperature(scores: np.ndarray, targets: sp.csr_matrix) -> float:
    """Scale t making softmax(t * scores) fit the rows' target items best (mean cross-entropy).

    Ridge scores predict a 0/1 bag (values near 0..1); as logits they would be almost flat.
    The residual network adds to ``t * scores``, so t is fitted once here, on out-of-fold scores.
    """
    targets = sp.csr_matrix(targets)
    counts = np.maximum(np.diff(targets.indptr), 1)
    best: tuple[float, float] | None = None
    for t in TEMPERATURES:
        logits = t * scores
        top = logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
        picked = np.asarray(targets.multiply(logits).sum(axis=1)).ravel()
        loss = float(np.mean(log_norm - picked / counts))
        if best is None or loss < best[0]:
            best = (loss, t)
    assert best is not None
    return best[1]
