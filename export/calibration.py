"""Which real sequences calibrate int8 and check parity: one seeded sample, chosen once."""

from __future__ import annotations

import numpy as np

from uservec.contract.sequences import encode_batch
from uservec.training.data.dataset import PreparedDataset

#: real sequences used to calibrate int8 and (a held-out quarter) to check parity
CALIBRATION_USERS = 512


def calibration_items(dataset: PreparedDataset, max_len: int, seed: int) -> np.ndarray:
    """Latest ``max_len`` events of a seeded sample of users, left-padded: (N, max_len)."""
    rng = np.random.default_rng(seed)
    n = min(CALIBRATION_USERS, dataset.num_users)
    users = np.sort(rng.choice(dataset.num_users, size=n, replace=False))
    return encode_batch([dataset.sequence(int(u)) for u in users], max_len)
