"""Pretraining losses, kept apart from the modules so the exported graph has no training branch."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from training.model import NextItemHead
from uservec.ids import NUM_RESERVED, PAD_ID


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
        negatives = torch.randint(
            NUM_RESERVED, head.output.out_features, (num_negatives,),
            generator=generator, device=hidden.device,
        )
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
