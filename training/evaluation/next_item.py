"""P1 next-item metrics: full ranking of every real item, HR@k and NDCG@k
(docs/protocols.md#p1-next-item-prediction).

Ranking rule, shared by the model and the popularity baseline: an item's rank is the number of real
items that score strictly higher plus the number that score the same and have a lower vocabulary
id (ties go to the lower id; vocabulary ids follow overall frequency). PAD and UNK are never ranked;
a target that is UNK (an item below ``min_count``) counts as a miss. With this rule the popularity
baseline on MovieLens-100K gives HR@10 0.0286 and NDCG@10 0.0123, the independent measurement quoted
in docs/protocols.md#p1-next-item-prediction (optimistic ties would give NDCG@10 0.0125,
pessimistic 0.0120, ties by raw MovieLens id 0.0121).
"""

from __future__ import annotations

import numpy as np
import torch

from uservec.contract.ids import NUM_RESERVED
from uservec.training.batching import Split, evaluation_examples, training_event_mask
from uservec.training.data.dataset import PreparedDataset
from uservec.training.model import NextItemHead, NextItNet


def rank_of_targets(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """scores (U, V), targets (U,) -> 0-based rank (U,) among real items; ties go to lower ids.

    Reserved ids are left out of the ranking; a reserved target gets rank V (never a hit).
    """
    V = scores.shape[1]
    scores = scores.clone()
    scores[:, :NUM_RESERVED] = float("-inf")
    target_score = scores.gather(1, targets.unsqueeze(1))  # (U, 1)
    ids = torch.arange(V, device=scores.device).unsqueeze(0)  # (1, V)
    higher = (scores > target_score).sum(1)  # (U,)
    tied_before = ((scores == target_score) & (ids < targets.unsqueeze(1))).sum(1)  # (U,)
    rank = higher + tied_before
    return torch.where(targets < NUM_RESERVED, torch.full_like(rank, V), rank)


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """Share of users whose target is in the top k (0-based ranks)."""
    return float(np.mean(ranks < k)) if len(ranks) else 0.0


def ndcg(ranks: np.ndarray, k: int) -> float:
    """Mean NDCG@k with one relevant item per user: 1/log2(rank + 2) inside the top k, else 0."""
    if not len(ranks):
        return 0.0
    gains = np.where(ranks < k, 1.0 / np.log2(np.asarray(ranks, dtype=np.float64) + 2.0), 0.0)
    return float(np.mean(gains))


def metrics_from_ranks(ranks: np.ndarray, k: int) -> dict[str, float | int]:
    return {f"hr@{k}": hit_rate(ranks, k), f"ndcg@{k}": ndcg(ranks, k), "users": len(ranks)}


@torch.no_grad()
def model_ranks(
    model: NextItNet,
    head: NextItemHead,
    dataset: PreparedDataset,
    split: Split = "valid",
    batch_size: int = 256,
    max_len: int = 100,
) -> np.ndarray:
    """(U,) P1 rank of each evaluable user's target under the model's next-item scores."""
    _, inputs, targets = evaluation_examples(dataset, split, max_len)
    was_training = model.training, head.training
    model.eval()
    head.eval()
    ranks = []
    # Where pretraining left it (CPU or a GPU); a parameter-free model (a hand-built test double)
    # has no device of its own, so the head's decides.
    params = [*model.parameters(), *head.parameters()]
    device = params[0].device if params else torch.device("cpu")
    try:
        for start in range(0, len(inputs), batch_size):
            items = torch.from_numpy(inputs[start : start + batch_size]).to(device)  # (B, L)
            scores = head(model.user_vector(items)).float()  # (B, V)
            target = torch.from_numpy(targets[start : start + batch_size]).to(device)  # (B,)
            ranks.append(rank_of_targets(scores, target).cpu().numpy())
    finally:
        model.train(was_training[0])
        head.train(was_training[1])
    return np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)


def evaluate_next_item(
    model: NextItNet,
    head: NextItemHead,
    dataset: PreparedDataset,
    split: Split = "valid",
    k: int = 10,
    batch_size: int = 256,
    max_len: int = 100,
) -> dict[str, float | int]:
    """P1 HR@k / NDCG@k of the model on the validation or test targets (full ranking)."""
    ranks = model_ranks(model, head, dataset, split, batch_size, max_len)
    return metrics_from_ranks(ranks, k)


def popularity_scores(dataset: PreparedDataset) -> np.ndarray:
    """(V,) number of training events (all but each user's last two) per vocabulary id."""
    train_items = dataset.items[training_event_mask(dataset)]
    return np.bincount(train_items, minlength=dataset.vocab.size).astype(np.float64)


def popularity_next_item(
    dataset: PreparedDataset, split: Split = "valid", k: int = 10
) -> dict[str, float | int]:
    """P1 metrics of ranking every user's candidates by training popularity (the P1 baseline)."""
    _, _, targets = evaluation_examples(dataset, split, max_len=1)
    scores = torch.from_numpy(popularity_scores(dataset))  # (V,)
    # every user gets the same scores, so rank each distinct target once
    distinct, inverse = np.unique(targets, return_inverse=True)
    ranks = rank_of_targets(
        scores.unsqueeze(0).expand(len(distinct), -1), torch.from_numpy(distinct)
    ).numpy()
    return metrics_from_ranks(ranks[inverse], k)
