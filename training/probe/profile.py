"""P2 probes: the ``lr``/``lr_bal`` baselines fitted on frozen vectors instead of item bags."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from uservec.training.baselines.logistic import (
    LogisticPredictor,
    balanced_weight,
    fit_predict,
    select_c,
)
from uservec.training.baselines.majority import majority_predict
from uservec.training.baselines.tfidf import tfidf_features, user_item_matrix
from uservec.training.data.dataset import PreparedDataset
from uservec.training.evaluation.profile_eval import PredictFn, ProfileFold, evaluate_profile
from uservec.training.evaluation.profile_split import Fold, ProfileLabels
from uservec.training.evaluation.statistics import MeanStd, PairedFolds, paired_folds
from uservec.training.linear_probes import column_scale

logger = logging.getLogger(__name__)

#: what a probe row reports: ``lr`` read by accuracy, ``lr_bal`` read by macro-F1
ProbeMetric = Literal["lr_accuracy", "lr_bal_macro_f1"]
PROBE_METRICS: tuple[ProbeMetric, ...] = ("lr_accuracy", "lr_bal_macro_f1")


class LinearProbe:
    """A P2 ``predict_fn``: standardise on the fold's training users, then ``lr``/``lr_bal``."""

    def __init__(self, vectors: np.ndarray, balanced: bool) -> None:
        self.vectors = vectors
        self.balanced = balanced

    def __call__(self, fold: ProfileFold) -> np.ndarray:
        train, test = standardise(self.vectors[fold.train_users], self.vectors[fold.test_users])
        c, _ = select_c(train, fold.train_labels, fold.classes, self.balanced)
        return fit_predict(train, fold.train_labels, test, c, balanced_weight(self.balanced))


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale both by the training rows' per-column mean and std (the probe's only fitted step)."""
    mean, std = column_scale(train)
    return (train - mean) / std, (test - mean) / std


class BagPlusVectorProbe:
    """A P2 ``predict_fn``: the ``lr``/``lr_bal`` baseline's TF-IDF bag plus a frozen vector.

    The vector block is standardised on the fold's training users and scaled by 1/sqrt(D), so its
    expected squared norm is 1 like the L2-normalised bag row: neither block dominates the
    shared L2 penalty. Everything else (vocabulary, IDF, C by inner CV) is the baseline's code.
    """

    def __init__(self, matrix: sp.csr_matrix, vectors: np.ndarray, balanced: bool) -> None:
        self.matrix = matrix
        self.vectors = vectors
        self.balanced = balanced

    def __call__(self, fold: ProfileFold) -> np.ndarray:
        bag_train, bag_test = tfidf_features(self.matrix, fold.pool_users, fold.train_users,
                                             fold.test_users)
        vec_train, vec_test = standardise(self.vectors[fold.train_users],
                                          self.vectors[fold.test_users])
        scale = 1.0 / np.sqrt(self.vectors.shape[1])
        train = sp.hstack([bag_train, sp.csr_matrix(vec_train * scale)]).tocsr()
        test = sp.hstack([bag_test, sp.csr_matrix(vec_test * scale)]).tocsr()
        c, _ = select_c(train, fold.train_labels, fold.classes, self.balanced)
        return fit_predict(train, fold.train_labels, test, c, balanced_weight(self.balanced))


def _majority(_balanced: bool) -> PredictFn:
    """The majority-class predictor, in the probe's ``make(balanced)`` shape (both are one)."""
    return majority_predict


@dataclass(frozen=True)
class ProbeRow:
    """One readout's probe: ``lr`` accuracy and ``lr_bal`` macro-F1 over the folds."""

    per_fold: dict[ProbeMetric, list[float]]
    #: ``tfidf+<readout>`` rows: the per-fold gain over the plain ``tfidf`` row
    minus_tfidf: dict[ProbeMetric, PairedFolds] | None = None

    def summary(self, metric: ProbeMetric) -> MeanStd:
        return MeanStd.of(self.per_fold[metric])

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {metric: self.summary(metric).to_json() for metric in PROBE_METRICS}
        out["per_fold"] = {metric: list(self.per_fold[metric]) for metric in PROBE_METRICS}
        if self.minus_tfidf is not None:
            out["minus_tfidf"] = {m: paired.to_json() for m, paired in self.minus_tfidf.items()}
        return out


def probe_attribute(
    vectors: dict[str, np.ndarray], dataset: PreparedDataset, labels: ProfileLabels,
    folds: Sequence[Fold], bag_plus: str | None = "mean",
) -> dict[str, ProbeRow]:
    """Accuracy (``lr``) and macro-F1 (``lr_bal``) per readout on the given P2 folds.

    The first row, ``majority``, is the floor. With ``bag_plus`` (a key of ``vectors``), also
    the row ``tfidf+<bag_plus>`` (:class:`BagPlusVectorProbe`) and, beside it, the plain TF-IDF
    baselines as ``tfidf``, with the per-fold difference between the two, which is what the row
    is for.
    """
    probes: dict[str, Callable[[bool], PredictFn]] = {"majority": _majority}
    probes.update({readout: partial(LinearProbe, matrix) for readout, matrix in vectors.items()})
    if bag_plus is not None:
        matrix = user_item_matrix(dataset)
        probes["tfidf"] = partial(LogisticPredictor, matrix)
        probes[f"tfidf+{bag_plus}"] = partial(BagPlusVectorProbe, matrix, vectors[bag_plus])
    rows: dict[str, ProbeRow] = {}
    for readout, make in probes.items():
        plain = evaluate_profile(make(False), labels, folds)
        balanced = evaluate_profile(make(True), labels, folds)
        rows[readout] = ProbeRow({"lr_accuracy": plain.values("accuracy"),
                                  "lr_bal_macro_f1": balanced.values("macro_f1")})
        logger.info("probe %s: lr accuracy %.3f, lr_bal macro-F1 %.3f", readout,
                    rows[readout].summary("lr_accuracy").mean,
                    rows[readout].summary("lr_bal_macro_f1").mean)
    if bag_plus is not None:
        name = f"tfidf+{bag_plus}"
        rows[name] = ProbeRow(rows[name].per_fold, {
            metric: paired_folds(rows[name].per_fold[metric], rows["tfidf"].per_fold[metric])
            for metric in PROBE_METRICS})
    return rows
