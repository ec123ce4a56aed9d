"""The frozen user vectors a probe reads: the encoder's readouts, and a TF-IDF SVD for scale."""

from __future__ import annotations

import numpy as np
import torch

from uservec.contract.ids import PAD_ID
from uservec.training.baselines.tfidf import tfidf_features, user_item_matrix
from uservec.training.data.dataset import PreparedDataset
from uservec.training.model import NextItNet, read_out

PROBE_READOUTS = ("last", "mean", "item-mean")
#: P3: the readouts a cross-domain head can read (the last position is near chance on P2)
CROSS_DOMAIN_READOUTS = ("mean", "item-mean")


@torch.no_grad()
def frozen_vectors(encoder: NextItNet, items: np.ndarray, readout: str,
                   batch_size: int = 256) -> np.ndarray:
    """(N, L) encoded sequences -> (N, D) vectors of the frozen backbone under ``readout``."""
    encoder.eval()
    parts = []
    for start in range(0, len(items), batch_size):
        batch = torch.from_numpy(items[start : start + batch_size])  # (B, L)
        if readout == "item-mean":
            mask = (batch != PAD_ID).unsqueeze(-1).float()  # (B, L, 1)
            hidden = encoder.embedding(batch) * mask  # (B, L, D)
            parts.append(read_out(hidden, batch, "mean"))
        elif readout == "last":
            parts.append(encoder.user_vector(batch, readout="last"))
        elif readout == "mean":
            parts.append(encoder.user_vector(batch, readout="mean"))
        else:
            raise ValueError(f"readout must be one of {PROBE_READOUTS}, got {readout!r}")
    return torch.cat(parts).numpy() if parts else np.zeros((0, encoder.dim), np.float32)


def tfidf_svd(dataset: PreparedDataset, dim: int, seed: int) -> np.ndarray:
    """(num_users, dim) truncated SVD of every user's TF-IDF item bag (whole history)."""
    from sklearn.decomposition import TruncatedSVD

    everyone = np.arange(dataset.num_users)
    (bags,) = tfidf_features(user_item_matrix(dataset), everyone, everyone)
    dim = max(1, min(dim, bags.shape[1] - 1))
    return np.asarray(TruncatedSVD(dim, random_state=seed).fit_transform(bags), dtype=np.float64)
