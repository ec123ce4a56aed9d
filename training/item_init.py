"""Item embeddings at the start of pretraining (``pretrain.item_init``)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from uservec.contract.ids import NUM_RESERVED
from uservec.training.batching import training_event_mask
from uservec.training.data.dataset import PreparedDataset
from uservec.training.evaluation.bags import binary_matrix, event_users


def svd_item_init(dataset: PreparedDataset, dim: int, seed: int,
                  extra_bags: sp.csr_matrix | None = None) -> np.ndarray:
    """(V, dim) item embeddings from a truncated SVD of the users' TF-IDF item bags.

    Next-item training alone leaves a user's long-term taste out of the vectors
    (docs/analysis.md#why-the-profile-tasks-lose); the SVD item factors encode exactly which
    items the same users consume, and the mean of a user's item factors approximates that user's
    SVD vector, which carries profile signal. Only training events count (each user's last two
    events, the P1 validation and test targets, are left out; a P3 pretraining view has already
    dropped the held-out target events). ``extra_bags`` (users, V) are more users' binary bags
    over the same vocabulary (a pretraining corpus), stacked under the dataset's. Rows are
    scaled to the unit per-coordinate std of the default init; reserved ids and items without a
    training event get zeros.
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfTransformer

    vocab_size = dataset.vocab.size
    train = training_event_mask(dataset)
    users = event_users(dataset)[train]
    bags = binary_matrix(users, dataset.items[train], (dataset.num_users, vocab_size))
    if extra_bags is not None:
        bags = sp.vstack([bags, extra_bags]).tocsr()
    k = max(1, min(dim, min(bags.shape) - 1))
    factors = TruncatedSVD(k, random_state=seed).fit(
        TfidfTransformer().fit_transform(bags)).components_.T  # (V, k)
    weights = np.zeros((vocab_size, dim), dtype=np.float32)
    weights[:, :k] = factors
    weights[:NUM_RESERVED] = 0.0
    used = np.asarray(bags.sum(axis=0)).ravel() > 0
    weights[~used] = 0.0
    std = float(weights[used].std()) if used.any() else 0.0
    return weights / std if std > 0 else weights
