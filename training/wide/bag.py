"""The TF-IDF item bag a profile wide part reads (the ``lr`` baselines' features, exactly).

``TfidfTransformer(norm="l2", smooth_idf=True)`` on a binary bag is: keep the vocabulary
columns, multiply by ``idf = ln((1 + n) / (1 + df)) + 1``, scale each row to unit length. Here it
is written out, so the same three steps can run inside the exported graph on the bag the
service builds from the whole event list (``uservec.contract.bags``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfTransformer

from uservec.training.baselines.tfidf import MIN_ITEM_USERS


@dataclass(frozen=True, eq=False)
class BagTransform:
    """Vocabulary columns of the catalog and their IDF weights."""

    #: (V_w,) catalog item indices kept
    columns: np.ndarray
    #: (V_w,) inverse document frequencies
    idf: np.ndarray

    @classmethod
    def fit(cls, pool: sp.csr_matrix, allowed: np.ndarray | None = None) -> BagTransform:
        """Vocabulary = items of >= 2 pool users (and ``allowed``); IDF over the pool."""
        counts = np.asarray(pool.sum(axis=0)).ravel()
        keep = counts >= MIN_ITEM_USERS
        if allowed is not None:
            keep &= np.isin(np.arange(counts.size), allowed)
        columns = np.flatnonzero(keep)
        transformer = TfidfTransformer(norm="l2", smooth_idf=True).fit(pool[:, columns])
        return cls(columns, np.asarray(transformer.idf_, dtype=np.float64))

    def transform(self, bags: sp.csr_matrix) -> sp.csr_matrix:
        """(N, V_w) unit-length TF-IDF rows of binary (N, I) bags."""
        x = sp.csr_matrix(bags[:, self.columns], dtype=np.float64)
        x.data[:] = 1.0
        x = sp.csr_matrix(x @ sp.diags(self.idf))
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.csr_matrix(sp.diags(1.0 / norms) @ x)
