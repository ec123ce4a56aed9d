"""A fitted wide part as plain tensors, for ``final.pt`` and for export.

``final.pt`` is loaded with ``weights_only=True``, so a wide part travels as a dict of tensors
and numbers: the vocabulary ids its bag reads, their IDF weights and the linear map.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from uservec.training.wide.profile import ProfileWide
from uservec.training.wide.ranking import RankingWide


def wide_payload(wide: ProfileWide) -> dict[str, Any]:
    """The profile wide part: logits = l2norm(bag[:, ids] * idf) @ weight.T + bias."""
    return {
        "kind": "tfidf_logistic",
        "vocab_ids": torch.from_numpy(np.asarray(wide.bag.columns, dtype=np.int64)),
        "idf": torch.from_numpy(np.asarray(wide.bag.idf, dtype=np.float64)),
        "weight": torch.from_numpy(np.asarray(wide.weight, dtype=np.float64)),
        "bias": torch.from_numpy(np.asarray(wide.bias, dtype=np.float64)),
        "power": float(wide.power),
        "c": float(wide.c),
    }


def ranking_payload(wide: RankingWide, temperature: float) -> dict[str, Any]:
    """The cross-domain wide part: scores = temperature * ([bag[:, ids], 1] @ left @ right)."""
    return {
        "kind": "reduced_rank_ridge",
        "vocab_ids": torch.from_numpy(np.asarray(wide.columns, dtype=np.int64)),
        "left": torch.from_numpy(np.asarray(wide.left, dtype=np.float32)),
        "right": torch.from_numpy(np.asarray(wide.right, dtype=np.float32)),
        "lam": float(wide.lam),
        "temperature": float(temperature),
    }
