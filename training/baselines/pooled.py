"""``lr_pooled`` / ``lr_bal_pooled``: the P2 bag baselines with another population's labelled users
(docs/protocols.md#p2-on-movielens-1m-and-transfer-to-movielens-100k).

The comparison a corpus-pretrained backbone has to win: the same TF-IDF logistic regressions as
``lr`` / ``lr_bal``, trained on the fold's labelled rows plus every labelled corpus user (their
item bags mapped onto the task's catalogue). Vocabulary and IDF come from the training-fold users
and the corpus users (label-free); C from the usual grid by inner 3-fold CV over the fold's
labelled rows, with every corpus row in the training part of each inner split. Test-fold users'
labels are never read.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfTransformer

from uservec.training.baselines.logistic import (
    C_GRID,
    FALLBACK_C,
    balanced_weight,
    fit_predict,
)
from uservec.training.baselines.tfidf import MIN_ITEM_USERS
from uservec.training.evaluation.classification import accuracy, macro_f1
from uservec.training.evaluation.profile_eval import ProfileFold
from uservec.training.evaluation.profile_split import INNER_FOLDS, column_labels, inner_folds

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class PooledRows:
    """The corpus' labelled users of one task: their bags over the task catalogue and labels."""

    #: (N, task catalogue) binary
    bags: sp.csr_matrix
    #: (N,) class names of the task (corpus users of other classes are left out)
    labels: np.ndarray


class PooledLogisticPredictor:
    """``lr_pooled`` (``balanced=False``, C by accuracy) or ``lr_bal_pooled`` as a predict_fn."""

    def __init__(self, matrix: sp.csr_matrix, pooled: PooledRows, balanced: bool) -> None:
        self.matrix, self.pooled, self.balanced = matrix, pooled, balanced
        self.chosen_c: list[float] = []

    def _features(self, fold: ProfileFold) -> tuple[sp.csr_matrix, sp.csr_matrix, sp.csr_matrix]:
        """TF-IDF of (labelled rows, corpus rows, test rows); vocabulary from pool + corpus."""
        pool = sp.vstack([self.matrix[fold.pool_users], self.pooled.bags]).tocsr()
        vocabulary = np.flatnonzero(np.asarray(pool.sum(axis=0)).ravel() >= MIN_ITEM_USERS)
        transformer = TfidfTransformer(norm="l2", smooth_idf=True).fit(pool[:, vocabulary])

        def rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
            return sp.csr_matrix(transformer.transform(matrix[:, vocabulary]))

        return (rows(self.matrix[fold.train_users]), rows(self.pooled.bags),
                rows(self.matrix[fold.test_users]))

    def _select_c(self, own: sp.csr_matrix, labels: np.ndarray, corpus: sp.csr_matrix,
                  classes: np.ndarray) -> float:
        _, counts = np.unique(labels, return_counts=True)
        n_splits = min(INNER_FOLDS, int(counts.max()))
        if counts.size < 2 or n_splits < 2:
            return FALLBACK_C
        weight = balanced_weight(self.balanced)
        scores = []
        for c in C_GRID:
            per_fold = []
            for inner in inner_folds(labels, n_splits=n_splits):
                train = sp.vstack([own[inner.train], corpus]).tocsr()
                train_labels = np.concatenate([labels[inner.train], self.pooled.labels])
                predicted = fit_predict(train, train_labels, own[inner.test], c, weight)
                truth = labels[inner.test]
                per_fold.append(macro_f1(truth, predicted, classes) if self.balanced
                                else accuracy(truth, predicted))
            scores.append(float(np.mean(per_fold)))
        return C_GRID[int(np.argmax(scores))]

    def __call__(self, fold: ProfileFold) -> np.ndarray:
        started = time.perf_counter()
        own, corpus, test = self._features(fold)
        c = self._select_c(own, fold.train_labels, corpus, fold.classes)
        self.chosen_c.append(c)
        train = sp.vstack([own, corpus]).tocsr()
        labels = np.concatenate([fold.train_labels, self.pooled.labels])
        predictions = fit_predict(train, labels, test, c, balanced_weight(self.balanced))
        logger.info("%s fold %d: %d own + %d corpus rows, C=%s, %.1fs",
                    "lr_bal_pooled" if self.balanced else "lr_pooled", fold.index,
                    own.shape[0], corpus.shape[0], c, time.perf_counter() - started)
        return predictions


def pooled_rows(bags: sp.csr_matrix, users: pd.DataFrame | None, attribute: str,
                buckets: tuple[float, ...] | None, classes: np.ndarray) -> PooledRows:
    """A corpus' labelled users of one task (``bags`` row i = ``users`` row i).

    Labels are bucketed like the task's; corpus users whose class the task does not have are
    left out (a pooled row of a class the task never predicts would only add noise).
    """
    if users is None or attribute not in users.columns:
        raise ValueError(f"the corpus has no user attribute {attribute!r} to pool")
    labels = column_labels(users[attribute], buckets)
    keep = np.isin(labels.labels, classes)
    return PooledRows(sp.csr_matrix(bags[labels.users[keep]]), labels.labels[keep])
