"""Pretraining losses, kept apart from the modules so the exported graph has no training branch."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from uservec.contract.ids import NUM_RESERVED, PAD_ID
from uservec.training.model import NextItemHead, read_out


def next_item_loss(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    head: NextItemHead,
    loss: Literal["full", "sampled"] = "full",
    num_negatives: int = 256,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of the next item at every non-PAD target position.

    hidden (B, L, D), targets (B, L) with PAD_ID where there is nothing to predict. ``full`` scores
    the whole vocabulary; ``sampled`` scores the target against ``num_negatives`` uniform negatives
    shared by the batch (see :func:`sampled_softmax_loss`).
    """
    valid = targets != PAD_ID  # (B, L)
    h = hidden[valid]  # (N, D)
    y = targets[valid]  # (N,)
    if y.numel() == 0:
        return hidden.sum() * 0.0
    if loss == "full":
        return F.cross_entropy(head(h), y)
    if loss == "sampled":
        # drawn where the generator lives (the CPU), so a GPU run draws the same negatives
        negatives = torch.randint(
            NUM_RESERVED, head.output.out_features, (num_negatives,),
            generator=generator, device=generator.device if generator else hidden.device,
        ).to(hidden.device)
        return sampled_softmax_loss(h, y, head, negatives)
    raise ValueError(f"loss must be 'full' or 'sampled', got {loss!r}")


def sampled_softmax_loss(
    hidden: torch.Tensor, targets: torch.Tensor, head: NextItemHead, negatives: torch.Tensor
) -> torch.Tensor:
    """Softmax over [target, uniform negatives], logQ-corrected, accidental hits removed.

    hidden (N, D), targets (N,), negatives (S,) drawn uniformly from the C real items. Each
    negative logit is corrected by -log(S * q) with q = 1/C, so the negatives' summed exponentials
    estimate the whole catalogue's share of the softmax normaliser and the loss approximates full
    cross-entropy.
    A negative equal to the row's own target is masked out (it is not a negative for that row).
    """
    num_items = head.output.out_features - NUM_RESERVED
    correction = math.log(negatives.numel() / num_items)  # log(S * q)
    positive = head.score_targets(hidden, targets).unsqueeze(1)  # (N, 1)
    negative = head.score_items(hidden, negatives) - correction  # (N, S)
    accidental = targets.unsqueeze(1) == negatives.unsqueeze(0)  # (N, S)
    negative = negative.masked_fill(accidental, float("-inf"))
    logits = torch.cat([positive, negative], dim=1)  # (N, 1 + S)
    zeros = torch.zeros(len(targets), dtype=torch.long, device=hidden.device)
    return F.cross_entropy(logits, zeros)


def bag_loss(hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
             head: NextItemHead) -> torch.Tensor:
    """User-level objective: the mean-pooled window predicts every item the window holds.

    hidden (B, L, D) over inputs ``items`` (B, L); ``targets`` (B, L) are the window's next items
    (PAD_ID where none). Next-item prediction alone teaches the last position short-term intent
    and leaves the window's mean with little of the user's long-term taste (a profile attribute
    is barely predictable from it); asking the mean to score all of the window's targets through
    the same output layer makes it a compressed bag of the user's items, like a truncated SVD of
    the user-item matrix. Full softmax: one row per sequence, so it is cheap even for large V.
    """
    valid = targets != PAD_ID  # (B, L)
    rows = valid.any(dim=1)  # (B,)
    if not bool(rows.any()):
        return hidden.sum() * 0.0
    pooled = read_out(hidden[rows], items[rows], "mean")  # (N, D)
    log_probs = F.log_softmax(head(pooled), dim=-1)  # (N, V)
    mask = valid[rows].to(log_probs.dtype)  # (N, L)
    picked = log_probs.gather(1, targets[rows]) * mask  # (N, L)
    return -(picked.sum(dim=1) / mask.sum(dim=1)).mean()


def set_loss(hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
             head: NextItemHead) -> torch.Tensor:
    """Order-free objective: every input position predicts the window's held-out item set.

    hidden (B, L, D) over a random permutation of a user's items ``items`` (B, L); ``targets``
    (B, K) are other items of the same user (PAD_ID where none). Mean cross-entropy over every
    (non-PAD position, target) pair, full softmax: each prefix of the permutation, a random
    subset of the user's items, learns to score the user's remaining items, which is what the
    last position is asked at P1 and what a profile head reads (training.batching.SetWindows).
    """
    valid = items != PAD_ID  # (B, L)
    wanted = targets != PAD_ID  # (B, K)
    if not bool(valid.any()) or not bool(wanted.any()):
        return hidden.sum() * 0.0
    log_probs = F.log_softmax(head(hidden[valid]), dim=-1)  # (N, V)
    rows = valid.nonzero()[:, 0]  # (N,) batch row of each position
    picked = log_probs.gather(1, targets[rows])  # (N, K)
    mask = wanted[rows].to(picked.dtype)  # (N, K)
    return -(picked * mask).sum() / mask.sum()
