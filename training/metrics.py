"""Evaluation metrics of P2 and P3 (PROTOCOLS.md), in plain numpy.

Baselines and neural methods report through these same functions, so a difference between two
methods can never come from two implementations of one metric. (P1 ranks the whole vocabulary for
every position at once and computes its HR/NDCG from target ranks in ``training.evaluate``.)
Rankings follow the P3 tie rule (score, then training popularity, then item id) so that a model
that outputs many equal scores (popularity, co-occurrence) is ranked deterministically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score


def accuracy(y_true: Sequence | np.ndarray, y_pred: Sequence | np.ndarray) -> float:
    """Fraction of exact label matches."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shape mismatch: {y_true.shape} vs {y_pred.shape}")
    if y_true.size == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float(np.mean(y_true == y_pred))


def macro_f1(
    y_true: Sequence | np.ndarray, y_pred: Sequence | np.ndarray, classes: Sequence | np.ndarray
) -> float:
    """Macro-F1 over *all* classes: a class the model never predicts counts as F1 = 0."""
    return float(
        f1_score(
            np.asarray(y_true), np.asarray(y_pred), average="macro",
            labels=np.asarray(classes), zero_division=0,
        )
    )


def _discounts(k: int) -> np.ndarray:
    """(k,) 1 / log2(rank + 1) for ranks 1..k."""
    return 1.0 / np.log2(np.arange(2, k + 2))


def _hits(ranked: np.ndarray, relevant: np.ndarray, k: int) -> np.ndarray:
    """(min(k, len(ranked)),) bool: whether each of the top-k ranked items is relevant."""
    return np.isin(np.asarray(ranked)[:k], np.asarray(relevant))


def hit_rate_at_k(ranked: np.ndarray, relevant: np.ndarray, k: int = 10) -> float:
    """1 if any relevant item is in the top ``k`` of ``ranked`` (best first), else 0."""
    return float(_hits(ranked, relevant, k).any())


def recall_at_k(ranked: np.ndarray, relevant: np.ndarray, k: int = 10) -> float:
    """|top-k ∩ relevant| / |relevant| (relevant items are distinct)."""
    relevant = np.unique(relevant)
    if relevant.size == 0:
        raise ValueError("recall with no relevant item is undefined")
    return float(_hits(ranked, relevant, k).sum() / relevant.size)


def ndcg_at_k(ranked: np.ndarray, relevant: np.ndarray, k: int = 10) -> float:
    """Binary-gain NDCG; the ideal DCG places min(|relevant|, k) hits at the top."""
    relevant = np.unique(relevant)
    if relevant.size == 0:
        raise ValueError("NDCG with no relevant item is undefined")
    hits = _hits(ranked, relevant, k)
    discounts = _discounts(k)
    dcg = float(discounts[: hits.size][hits].sum())
    ideal = float(discounts[: min(relevant.size, k)].sum())
    return dcg / ideal


def tie_break_order(popularity: np.ndarray) -> np.ndarray:
    """Candidate positions sorted by popularity desc, then position (= item id order) asc."""
    popularity = np.asarray(popularity)
    return np.lexsort((np.arange(popularity.size), -popularity.astype(np.float64)))


def top_k(scores: np.ndarray, popularity: np.ndarray, k: int = 10) -> np.ndarray:
    """Top-``k`` candidate positions per row of ``scores`` with the P3 tie rule.

    ``scores`` is (B, C) or (C,) over candidates in item id order; ties are broken by
    ``popularity`` (C,) descending, then by candidate position ascending. Returns (B, k') int64
    (or (k',)) with k' = min(k, C), best first.
    """
    scores = np.asarray(scores, dtype=np.float64)
    single = scores.ndim == 1
    scores = np.atleast_2d(scores)
    if scores.shape[1] != len(popularity):
        raise ValueError(f"{scores.shape[1]} scores per row but {len(popularity)} candidates")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    base = tie_break_order(popularity)
    laid_out = scores[:, base]  # candidates in tie-break order
    k = min(k, laid_out.shape[1])
    # The k-th best score bounds the top k; a stable sort of the (few) candidates at or above it
    # keeps the tie-break order among equal scores.
    kth = -np.partition(-laid_out, k - 1, axis=1)[:, k - 1]
    out = np.empty((laid_out.shape[0], k), dtype=np.int64)
    for row, (values, bound) in enumerate(zip(laid_out, kth, strict=True)):
        head = np.flatnonzero(values >= bound)
        out[row] = base[head[np.argsort(-values[head], kind="stable")[:k]]]
    return out[0] if single else out


def mean_std(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value): spread over folds."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("mean of no values")
    std = float(values.std(ddof=1)) if values.size > 1 else 0.0
    return float(values.mean()), std


def mean_se(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std / sqrt(n)): spread over test users."""
    values = np.asarray(values, dtype=np.float64)
    mean, std = mean_std(values)
    return mean, std / math.sqrt(values.size)
