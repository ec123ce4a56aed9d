"""Event-level helpers every protocol shares: whose event is this, and binary user x item bags."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from uservec.training.data.dataset import PreparedDataset


def event_users(dataset: PreparedDataset) -> np.ndarray:
    """(E,) dataset user index of every event."""
    return np.repeat(np.arange(dataset.num_users, dtype=np.int64), dataset.lengths())


def binary_matrix(rows: np.ndarray, columns: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """(R, C) 0/1 matrix with a one at every (rows[e], columns[e]); repeated events count once.

    Every user x item bag of the project (TF-IDF baselines, SVD item init, P3 bags) is built
    here, so "repeated events stay in sequences but a bag is binary" has one implementation.
    """
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float64), (rows, columns)), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix
