"""The P2 logistic-regression baselines ``lr`` and ``lr_bal``
(docs/protocols.md#p2-user-profile-prediction).

Multinomial lbfgs (max_iter 1000) on TF-IDF item bags; C from :data:`C_GRID` by inner stratified
3-fold CV (ties: the smaller C), refit on every labelled row. ``lr`` has no class weights and
picks C by accuracy (the accuracy anchor); ``lr_bal`` is class-balanced and picks C by macro-F1
(the macro-F1 anchor). The probes and the task heads' linear probe reuse :func:`select_c`.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from uservec.training.baselines.tfidf import tfidf_features
from uservec.training.evaluation.classification import accuracy, macro_f1
from uservec.training.evaluation.profile_eval import ProfileFold
from uservec.training.evaluation.profile_split import INNER_FOLDS, inner_folds

logger = logging.getLogger(__name__)

#: inverse regularisation strengths (ties: the smaller C)
C_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
#: C used when the labelled rows are too few for inner cross-validation
FALLBACK_C = 1.0

#: sklearn's ``class_weight``: None (unweighted), "balanced", or {class: weight}
ClassWeight = str | Mapping[Any, float] | None
#: predict(train features, train labels, test features, C) -> predictions
Predict = Callable[[Any, np.ndarray, Any, float], Any]
#: score(truth, predictions) -> the inner-CV criterion
Score = Callable[[np.ndarray, Any], float]


def balanced_weight(balanced: bool) -> ClassWeight:
    """The ``class_weight`` of the ``lr_bal`` (True) or ``lr`` (False) baseline."""
    return "balanced" if balanced else None


def fit_lr(features: Any, labels: np.ndarray, c: float,
           class_weight: ClassWeight) -> LogisticRegression:
    """A logistic regression with inverse L2 strength ``c`` (lbfgs, one BLAS thread)."""
    model = LogisticRegression(C=c, solver="lbfgs", max_iter=1000, class_weight=class_weight)
    # One thread: these problems are small, and BLAS/OpenMP threads on a shared machine make
    # lbfgs an order of magnitude slower through oversubscription.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(features, labels)


def fit_predict(
    train: Any, labels: np.ndarray, test: Any, c: float, class_weight: ClassWeight
) -> np.ndarray:
    """Logistic-regression predictions; a one-class training set predicts that class."""
    if np.unique(labels).size < 2:
        return np.full(test.shape[0], labels[0])
    return np.asarray(fit_lr(train, labels, c, class_weight).predict(test))


def select_c(
    features: Any, labels: np.ndarray, classes: np.ndarray, balanced: bool, *,
    predict: Predict | None = None, score: Score | None = None,
) -> tuple[float, list[float]]:
    """C by inner 3-fold CV: accuracy (``lr``) or macro-F1 (``lr_bal``); ties -> smaller C.

    ``predict(train, train_labels, test, c)`` and ``score(truth, predictions)``, when given,
    replace the fit and the criterion that ``balanced`` implies (a task head's linear probe,
    ``profile_task.probe_head``, predicts under two decision rules and scores each metric on
    its own).
    """
    _, counts = np.unique(labels, return_counts=True)
    n_splits = min(INNER_FOLDS, int(counts.max()))
    if counts.size < 2 or n_splits < 2:
        logger.warning("%d labelled rows: too few for inner CV, using C=%s", labels.size,
                       FALLBACK_C)
        return FALLBACK_C, []
    with warnings.catch_warnings():
        # Low-label folds can hold classes with fewer than 3 examples; CV still runs.
        warnings.simplefilter("ignore", UserWarning)
        folds = inner_folds(labels, n_splits=n_splits)
    fit = predict if predict is not None else _baseline_predict(balanced)
    criterion = score if score is not None else _baseline_score(balanced, classes)
    scores = []
    for c in C_GRID:
        per_fold = [
            criterion(labels[fold.test], fit(features[fold.train], labels[fold.train],
                                             features[fold.test], c))
            for fold in folds
        ]
        scores.append(float(np.mean(per_fold)))
    return C_GRID[int(np.argmax(scores))], scores


def _baseline_predict(balanced: bool) -> Predict:
    class_weight = balanced_weight(balanced)

    def predict(train: Any, train_labels: np.ndarray, test: Any, c: float) -> np.ndarray:
        return fit_predict(train, train_labels, test, c, class_weight)

    return predict


def _baseline_score(balanced: bool, classes: np.ndarray) -> Score:
    if not balanced:
        return accuracy

    def score(truth: np.ndarray, predicted: Any) -> float:
        return macro_f1(truth, predicted, classes)

    return score


class LogisticPredictor:
    """The ``lr`` (``balanced=False``) or ``lr_bal`` baseline as a P2 ``predict_fn``.

    Keeps the C chosen in each fold (``chosen_c``) for the report.
    """

    def __init__(self, matrix: sp.csr_matrix, balanced: bool) -> None:
        self.matrix = matrix  # user x item counts (user_item_matrix), shared by both variants
        self.balanced = balanced
        self.chosen_c: list[float] = []

    def __call__(self, fold: ProfileFold) -> np.ndarray:
        started = time.perf_counter()
        train, test = tfidf_features(self.matrix, fold.pool_users, fold.train_users,
                                     fold.test_users)
        c, scores = select_c(train, fold.train_labels, fold.classes, self.balanced)
        self.chosen_c.append(c)
        predictions = fit_predict(train, fold.train_labels, test, c,
                                  balanced_weight(self.balanced))
        logger.info("%s fold %d: %d x %d TF-IDF (%d non-zeros), C=%s (inner %s), %.1fs",
                    "lr_bal" if self.balanced else "lr", fold.index, *train.shape, train.nnz, c,
                    [round(v, 3) for v in scores], time.perf_counter() - started)
        return predictions
