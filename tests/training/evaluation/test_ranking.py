import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uservec.training.evaluation.ranking import hit_rate_at_k, ndcg_at_k, recall_at_k, top_k


def test_ranking_metrics_match_hand_computation():
    ranked = np.array([5, 3, 9, 1])
    relevant = np.array([3, 1])
    # k=3: one hit at rank 2; ideal = two hits at ranks 1, 2.
    assert hit_rate_at_k(ranked, relevant, 3) == 1.0
    assert recall_at_k(ranked, relevant, 3) == 0.5
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(ranked, relevant, 3) == pytest.approx(expected)
    assert hit_rate_at_k(ranked, np.array([7]), 3) == 0.0
    assert ndcg_at_k(ranked, np.array([7]), 3) == 0.0


def test_ndcg_ideal_uses_at_most_k_hits():
    ranked = np.arange(20)
    relevant = np.arange(12)  # more relevant items than k: a full top-k is perfect
    assert ndcg_at_k(ranked, relevant, 10) == pytest.approx(1.0)
    assert recall_at_k(ranked, relevant, 10) == pytest.approx(10 / 12)


def test_duplicate_relevant_items_count_once():
    assert recall_at_k(np.array([4, 2]), np.array([4, 4]), 2) == 1.0


def test_top_k_breaks_ties_by_popularity_then_item_id():
    scores = np.array([1.0, 2.0, 1.0, 1.0, 0.0])
    popularity = np.array([3, 0, 5, 3, 9])
    # 1 has the best score; 0, 2, 3 tie: popularity 5 first (2), then 0 before 3 by id.
    assert top_k(scores, popularity, 4).tolist() == [1, 2, 0, 3]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=25),
    st.integers(1, 12),
)
def test_top_k_equals_brute_force_sort(rows, k):
    scores = np.array([float(s) for s, _ in rows])
    popularity = np.array([p for _, p in rows])
    expected = sorted(range(len(rows)), key=lambda i: (-scores[i], -popularity[i], i))[:k]
    assert top_k(scores, popularity, k).tolist() == expected
    batch = top_k(np.stack([scores, -scores]), popularity, k)
    assert batch[0].tolist() == expected


def test_top_k_rejects_misaligned_scores():
    with pytest.raises(ValueError):
        top_k(np.zeros((2, 3)), np.zeros(4), 2)
