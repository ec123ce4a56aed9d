"""The P2 baselines that get a corpus' data: ``lr_pooled`` / ``lr_bal_pooled`` (its labelled
users) and ``svd_lr`` / ``svd_lr_bal`` (its behaviour, as SVD user factors)
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
    select_c,
)
from uservec.training.baselines.tfidf import MIN_ITEM_USERS
from uservec.training.evaluation.classification import accuracy, macro_f1
from uservec.training.evaluation.profile_eval import ProfileFold
from uservec.training.evaluation.profile_split import INNER_FOLDS, column_labels, inner_folds

logger = logging.getLogger(__name__)

#: user factors of the ``svd_lr`` baselines (the model's default width)
SVD_DIM = 64


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


class SvdLogisticPredictor:
    """``svd_lr`` / ``svd_lr_bal``: the logistic regressions on SVD user factors of the larger
    corpus (label-free: TF-IDF of the training-fold users' and every corpus user's bags), fitted
    on the fold's labelled rows only; what unsupervised corpus features alone are worth."""

    def __init__(self, matrix: sp.csr_matrix, pooled: PooledRows, balanced: bool,
                 dim: int = SVD_DIM) -> None:
        self.matrix, self.pooled, self.balanced, self.dim = matrix, pooled, balanced, dim
        self.chosen_c: list[float] = []

    def __call__(self, fold: ProfileFold) -> np.ndarray:
        from sklearn.decomposition import TruncatedSVD

        pool = sp.vstack([self.matrix[fold.pool_users], self.pooled.bags]).tocsr()
        vocabulary = np.flatnonzero(np.asarray(pool.sum(axis=0)).ravel() >= MIN_ITEM_USERS)
        tfidf = TfidfTransformer(norm="l2", smooth_idf=True).fit(pool[:, vocabulary])
        k = max(1, min(self.dim, vocabulary.size - 1, pool.shape[0] - 1))
        svd = TruncatedSVD(k, random_state=0).fit(tfidf.transform(pool[:, vocabulary]))

        def factors(users: np.ndarray) -> np.ndarray:
            return np.asarray(svd.transform(tfidf.transform(self.matrix[users][:, vocabulary])))

        train, test = factors(fold.train_users), factors(fold.test_users)
        c, _ = select_c(train, fold.train_labels, fold.classes, self.balanced)
        self.chosen_c.append(c)
        return fit_predict(train, fold.train_labels, test, c, balanced_weight(self.balanced))
