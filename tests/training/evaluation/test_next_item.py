from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from uservec.contract.ids import PAD_ID, UNK_ID
from uservec.training.evaluation.next_item import (
    evaluate_next_item,
    metrics_from_ranks,
    popularity_next_item,
    rank_of_targets,
)
from uservec.training.model import NextItemHead

V = 6  # ids 0 (PAD), 1 (UNK), real items 2..5


def test_rank_counts_higher_scores_then_ties_with_lower_ids_and_skips_reserved_ids() -> None:
    scores = torch.tensor([
        [9.0, 9.0, 0.5, 0.7, 0.5, 0.1],  # target 4: 3 scores higher (0.7), 2 ties with lower id
        [9.0, 9.0, 0.5, 0.7, 0.5, 0.1],  # target 2: lowest id of its tie
        [0.0, 0.0, 1.0, 1.0, 1.0, 1.0],  # UNK target: never ranked
    ])
    ranks = rank_of_targets(scores, torch.tensor([4, 2, UNK_ID]))
    assert ranks.tolist() == [2, 1, V]


def test_metrics_from_hand_computed_ranks() -> None:
    metrics = metrics_from_ranks(np.array([0, 1, 10, 3]), k=10)
    assert metrics["users"] == 4
    assert metrics["hr@10"] == pytest.approx(3 / 4)
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(5)) / 4)


class LastItemEncoder(nn.Module):
    """User vector = one-hot of the newest event (so a head's weights are a transition table)."""

    def user_vector(self, items: torch.Tensor) -> torch.Tensor:
        return F.one_hot(items[:, -1], V).float()


def test_model_evaluation_on_a_hand_computed_case(dataset_from_sequences) -> None:
    dataset = dataset_from_sequences([[2, 3, 4, 5], [5, 2, 3, 2], [3, 3], [2, 5, 4, 3]], V)
    head = NextItemHead(V, V)
    with torch.no_grad():
        head.output.bias.zero_()
        weight = torch.zeros(V, V)
        for item in range(2, V - 1):
            weight[item + 1, item] = 1.0  # predict "current + 1"
        weight[PAD_ID] = weight[UNK_ID] = 10.0  # reserved ids would win if they were ranked
        head.output.weight.copy_(weight)
    encoder = LastItemEncoder()
    # valid: user 0 last 3 -> target 4 rank 0; user 1 last 2 -> 3 rank 0; user 2 too short;
    # user 3 last 5 -> all real items tie, target 4 rank 2 (after 2 and 3)
    valid = evaluate_next_item(encoder, head, dataset, "valid", k=10, max_len=4)  # type: ignore[arg-type]
    assert valid == pytest.approx({"hr@10": 1.0, "ndcg@10": 2.5 / 3, "users": 3})
    # test: user 0 -> 5 rank 0; user 1 last 3 -> 4 first, target 2 wins the tie: rank 1;
    # user 3 last 4 -> 5 first, target 3 after the tied 2: rank 2
    test = evaluate_next_item(encoder, head, dataset, "test", k=2, max_len=4)  # type: ignore[arg-type]
    assert test == pytest.approx({"hr@2": 2 / 3, "ndcg@2": (1 + 1 / math.log2(3)) / 3, "users": 3})


def test_popularity_on_a_hand_computed_case(dataset_from_sequences) -> None:
    sequences = [[2, 3, 4, 5], [5, 2, 3, 2], [3, 3], [2, 5, 4, 3], [4, 3, 5]]
    dataset = dataset_from_sequences(sequences, V)
    # training events (all but the last two): 2,3 | 5,2 | - | 2,5 | 4
    # counts 2:3, 5:2, 3:1, 4:1 -> order 2, 5, 3, 4 (3 and 4 tie: lower id first)
    valid = popularity_next_item(dataset, "valid", k=3)  # targets 4, 3, 4, 3 -> ranks 3, 2, 3, 2
    assert valid == pytest.approx({"hr@3": 0.5, "ndcg@3": 0.25, "users": 4})
    test = popularity_next_item(dataset, "test", k=3)  # targets 5, 2, 3, 5 -> ranks 1, 0, 2, 1
    expected = (2 / math.log2(3) + 1 + 1 / math.log2(4)) / 4
    assert test == pytest.approx({"hr@3": 1.0, "ndcg@3": expected, "users": 4})
