"""P3 ranking metrics and the P3 tie rule, in plain numpy
(docs/protocols.md#p3-cross-domain-cold-start).

Rankings follow the P3 tie rule (score, then training popularity, then item id) so that a model
that outputs many equal scores (popularity, co-occurrence) is ranked deterministically. (P1 ranks
the whole vocabulary for every user at once and computes its HR/NDCG from target ranks in
:mod:`next_item`.)
"""

from __future__ import annotations

import numpy as np

#: the cut-off of every P3 metric unless a config says otherwise
K = 10


def _discounts(k: int) -> np.ndarray:
    """(k,) 1 / log2(rank + 1) for ranks 1..k."""
    return 1.0 / np.log2(np.arange(2, k + 2))


def _hits(ranked: np.ndarray, relevant: np.ndarray, k: int) -> np.ndarray:
    """(min(k, len(ranked)),) bool: whether each of the top-k ranked items is relevant."""
    return np.isin(np.asarray(ranked)[:k], np.asarray(relevant))


def hit_rate_at_k(ranked: np.ndarray, relevant: np.ndarray, k: int = K) -> float:
    """1 if any relevant item is in the top ``k`` of ``ranked`` (best first), else 0."""
    return float(_hits(ranked, relevant, k).any())


def recall_at_k(ranked: np.ndarray, relevant: np.ndarray, k: int = K) -> float:
    """|top-k ∩ relevant| / |relevant| (relevant items are distinct)."""
    relevant = np.unique(relevant)
    if relevant.size == 0:
        raise ValueError("recall with no relevant item is undefined")
    return float(_hits(ranked, relevant, k).sum() / relevant.size)


def ndcg_at_k(ranked: np.ndarray, relevant: np.ndarray, k: int = K) -> float:
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


def top_k(scores: np.ndarray, popularity: np.ndarray, k: int = K) -> np.ndarray:
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
