"""Linear probes on frozen user vectors, the starting heads of linear probing then fine-tuning.

A head trained from random weights first chases a random decision boundary through the task's
patches; starting it from the best linear map of the frozen pretrained vectors (LP-FT) avoids
that. P3's probe is ridge from the user vectors to the target-item bags (this module); P2's is a
class-weighted logistic regression (:func:`training.profile_task.probe_head`). Both standardise
the vectors first (:func:`column_scale`) and fold the scaling back into the weights, so the head
stays one linear layer on the raw user vector.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from uservec.training.baselines.ridge import LAMBDA_GRID, best_lambda
from uservec.training.evaluation.ranking import K, ndcg_at_k, top_k

logger = logging.getLogger(__name__)


def column_scale(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std (+1e-6, so constant columns map to 0) of the fitted rows.

    Every probe standardises the frozen vectors with these before its penalised fit, so the
    penalty treats all coordinates alike, and folds them back into the weights afterwards.
    """
    return vectors.mean(axis=0), vectors.std(axis=0) + 1e-6


#: lam -> (weight (C, D), bias (C,)) of one fitted ridge problem
RidgeSolve = Callable[[float], tuple[np.ndarray, np.ndarray]]


def vector_ridge_solver(vectors: np.ndarray, targets: Any) -> RidgeSolve:
    """Ridge from user vectors (N, D) to target bags (N, C), for any lambda: raw-vector weights.

    The P3 ``ridge`` baseline's model (binary targets, an intercept column penalised too) with
    the frozen user vector in place of the source bag: the vectors are standardised, solved in
    the primal (D + 1 unknowns per item, a (D+1)^2 system), and the standardisation is folded
    back so that ``vectors @ weight.T + bias`` are the ridge scores. The standardisation, the
    Gram matrix and the right-hand side do not depend on lambda, so a lambda search computes
    them once and pays only the solve per grid point.
    """
    mean, std = column_scale(vectors)
    design = np.hstack([(vectors - mean) / std, np.ones((len(vectors), 1))])  # (N, D + 1)
    rhs = np.asarray((targets.T @ design).T)  # (D + 1, C), targets may be sparse
    gram = design.T @ design
    eye = np.eye(design.shape[1])

    def solve(lam: float) -> tuple[np.ndarray, np.ndarray]:
        solution = np.linalg.solve(gram + lam * eye, rhs)
        weight = (solution[:-1] / std[:, None]).T  # (C, D)
        return weight, solution[-1] - weight @ mean

    return solve


def vector_ridge(vectors: np.ndarray, targets: Any, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`vector_ridge_solver` at one lambda."""
    return vector_ridge_solver(vectors, targets)(lam)


def select_ridge_lambda(
    vectors: np.ndarray, targets: Any, popularity: np.ndarray, k: int = K,
    grid: Sequence[float] = LAMBDA_GRID, holdout: float = 0.1, seed: int = 0,
) -> tuple[float, dict[float, float]]:
    """Lambda of :func:`vector_ridge` by NDCG@k on a random holdout of the fitted users.

    The holdout is drawn inside the users being fitted, so the same call serves the tuning
    round and the refit without reading any validation or test user. Ties: smaller lambda.
    """
    targets = targets.tocsr()
    order = np.random.default_rng(seed).permutation(len(vectors))
    n_hold = max(1, round(holdout * len(vectors)))
    held, fitted = order[:n_hold], order[n_hold:]
    held = held[np.diff(targets.indptr)[held] > 0]  # NDCG needs a target item
    if held.size == 0:
        return float(min(grid)), {}
    solve = vector_ridge_solver(vectors[fitted], targets[fitted])
    scores: dict[float, float] = {}
    for lam in grid:
        weight, bias = solve(lam)
        ranked = top_k(vectors[held] @ weight.T + bias, popularity, k)
        scores[lam] = float(np.mean([ndcg_at_k(ranked[row], targets[user].indices, k)
                                     for row, user in enumerate(held)]))
    return best_lambda(scores), scores


def probe_item_head(
    head: nn.Module, vectors: np.ndarray, targets: Any, popularity: np.ndarray, k: int = K,
) -> float:
    """Set an :class:`ItemScoringHead` to the ridge probe of ``vectors``; returns its lambda.

    The P3 counterpart of :func:`training.profile_task.probe_head` (linear probing, then
    fine-tuning): the untrained head is the best linear map from the frozen user vector to the
    target items, and competes as epoch 0. The scores are scaled to unit spread over the fitted
    users, so the softmax the training continues with starts neither flat nor saturated; scaling
    leaves the ranking as is.
    """
    lam, _ = select_ridge_lambda(vectors, targets, popularity, k)
    weight, bias = vector_ridge(vectors, targets, lam)
    spread = score_spread(vectors, weight, bias)
    scale = 1.0 / spread if spread > 0 else 1.0
    with torch.no_grad():
        head.item_embedding.copy_(torch.from_numpy(weight * scale))  # type: ignore[operator]
        head.item_bias.copy_(torch.from_numpy(bias * scale))  # type: ignore[operator]
    return lam


def score_spread(vectors: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> float:
    """Standard deviation of every entry of ``vectors @ weight.T + bias`` (N x C), in O(D^2).

    The score matrix itself would be users x candidates (Amazon: 1,736 x 12,319 floats, 170 MB);
    its first two moments follow from D x D Gram matrices of the two factors.
    """
    n, c = vectors.shape[0], weight.shape[0]
    if n == 0 or c == 0:
        return 0.0
    x = vectors.astype(np.float64)
    w = weight.astype(np.float64)
    b = bias.astype(np.float64)
    x_sum, w_sum = x.sum(axis=0), w.sum(axis=0)
    mean = (x_sum @ w_sum + n * b.sum()) / (n * c)
    square = (np.sum((x.T @ x) * (w.T @ w)) + 2.0 * x_sum @ (w.T @ b) + n * b @ b) / (n * c)
    return float(np.sqrt(max(square - mean * mean, 0.0)))
