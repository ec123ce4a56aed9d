"""Wide parts as modules of the fused graph: they read the dense (B, V) item bag input.

``bag`` is ``uservec.contract.bags.bag_matrix``: 0/1 per vocabulary id over every event the user
sent. Buffers are float32 (the wide part stays fp32 in an int8 bundle where the quantizer leaves
it alone; its MatMuls are tiny next to the encoder).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


class ProfileWidePart(nn.Module):
    """Logits = l2-normalised (bag[:, ids] * idf) @ weight.T + bias: the TF-IDF logistic model."""

    vocab_ids: torch.Tensor
    idf: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def __init__(self, vocab_ids: torch.Tensor, idf: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("vocab_ids", vocab_ids.to(torch.int64))
        self.register_buffer("idf", idf.to(torch.float32))
        self.register_buffer("weight", weight.to(torch.float32))
        self.register_buffer("bias", bias.to(torch.float32))

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ProfileWidePart:
        return cls(torch.as_tensor(payload["vocab_ids"]), torch.as_tensor(payload["idf"]),
                   torch.as_tensor(payload["weight"]), torch.as_tensor(payload["bias"]))

    def forward(self, bag: torch.Tensor) -> torch.Tensor:
        x = bag.index_select(1, self.vocab_ids) * self.idf  # (B, V_w)
        norm = torch.sqrt((x * x).sum(dim=1, keepdim=True)).clamp_min(1e-12)  # (B, 1)
        return (x / norm) @ self.weight.T + self.bias  # (B, C)


class RankingWidePart(nn.Module):
    """Query = temperature * ([bag[:, ids], 1] @ left) (B, r); item vectors = right.T (N, r)."""

    vocab_ids: torch.Tensor
    left: torch.Tensor
    right: torch.Tensor

    def __init__(self, vocab_ids: torch.Tensor, left: torch.Tensor, right: torch.Tensor,
                 temperature: float) -> None:
        super().__init__()
        self.register_buffer("vocab_ids", vocab_ids.to(torch.int64))
        self.register_buffer("left", left.to(torch.float32) * float(temperature))
        self.register_buffer("right", right.to(torch.float32))

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> RankingWidePart:
        return cls(torch.as_tensor(payload["vocab_ids"]), torch.as_tensor(payload["left"]),
                   torch.as_tensor(payload["right"]), float(payload["temperature"]))

    def forward(self, bag: torch.Tensor) -> torch.Tensor:
        x = bag.index_select(1, self.vocab_ids)  # (B, d)
        return x @ self.left[:-1] + self.left[-1]  # (B, r)

    def item_vectors(self) -> torch.Tensor:
        return self.right.T  # (N, r)
