"""The P2 baselines' features: a TF-IDF of each user's binary item bag
(docs/protocols.md#p2-user-profile-prediction)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfTransformer

from uservec.training.data.dataset import PreparedDataset
from uservec.training.evaluation.bags import binary_matrix, event_users

#: vocabulary: items seen by at least this many training-fold users
MIN_ITEM_USERS = 2


def user_item_matrix(dataset: PreparedDataset) -> sp.csr_matrix:
    """(U, I) binary user x catalog-item matrix (raw item identity, rare items included)."""
    return binary_matrix(event_users(dataset), dataset.item_index,
                         (dataset.num_users, dataset.catalog.size))


def tfidf_features(
    matrix: sp.csr_matrix, pool_users: np.ndarray, *user_sets: np.ndarray
) -> list[sp.csr_matrix]:
    """TF-IDF rows for each of ``user_sets``, vocabulary and IDF from the training-fold pool."""
    pool = matrix[pool_users]
    vocabulary = np.flatnonzero(np.asarray(pool.sum(axis=0)).ravel() >= MIN_ITEM_USERS)
    transformer = TfidfTransformer(norm="l2", smooth_idf=True).fit(pool[:, vocabulary])
    return [sp.csr_matrix(transformer.transform(matrix[users][:, vocabulary]))
            for users in user_sets]
