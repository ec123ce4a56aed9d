"""The P2 evaluation path: every profile method (baseline, network, probe) is scored here.

A method is a ``predict_fn(fold) -> labels``; :func:`evaluate_profile` hands it each fold's
labelled training users (never a test label) and scores its predictions with
:mod:`classification`, so every number of a P2 table comes from one loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from uservec.contract.decision import Decision
from uservec.training.evaluation.classification import accuracy, macro_f1
from uservec.training.evaluation.kinds import PROFILE_METRICS, ProfileMetric
from uservec.training.evaluation.profile_split import Fold, ProfileLabels
from uservec.training.evaluation.statistics import MeanStd


@dataclass(frozen=True, eq=False)
class ProfileFold:
    """What a P2 method gets for one fold (dataset user indices and their labels)."""

    index: int
    #: labelled users the method may fit on
    train_users: np.ndarray
    train_labels: np.ndarray
    #: users to predict (labels withheld)
    test_users: np.ndarray
    #: every training-fold user (== train_users unless low-label): behaviour, no labels needed
    pool_users: np.ndarray
    classes: np.ndarray


#: predict_fn(fold) -> (len(fold.test_users),) predicted labels (str), or one such array per
#: decision rule (see :data:`METRIC_DECISION`)
PredictFn = Callable[[ProfileFold], np.ndarray | Mapping[str, np.ndarray]]

#: which decision rule each metric reads when a method offers several. A network trained with
#: class weights ``w_c ~ 1 / prior_c`` estimates the *balanced* posterior: its argmax as trained
#: targets balanced error (macro-F1), while its logits shifted by ``log prior`` give the argmax of
#: the ordinary posterior, the Bayes rule for accuracy (post-hoc logit adjustment, Menon et al.
#: 2021). The baselines get the same split by training two models (``lr`` for accuracy,
#: ``lr_bal`` for macro-F1); the rule per metric is fixed here, never chosen on a test fold.
METRIC_DECISION: dict[ProfileMetric, Decision] = {
    "accuracy": "prior_adjusted", "macro_f1": "as_trained"}

#: accuracy and macro-F1 of one set of predictions
Scores = dict[ProfileMetric, float]


def scores(truth: np.ndarray, predicted: np.ndarray, classes: np.ndarray) -> Scores:
    return {"accuracy": accuracy(truth, predicted),
            "macro_f1": macro_f1(truth, predicted, classes)}


@dataclass(frozen=True)
class FoldScores:
    """One fold's scores and sizes."""

    fold: int
    train_rows: int
    test_rows: int
    scores: Scores

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fold": self.fold, "train_rows": self.train_rows,
                               "test_rows": self.test_rows}
        for metric in PROFILE_METRICS:
            out[metric] = self.scores[metric]
        return out


@dataclass(frozen=True)
class ProfileEvaluation:
    """Per-fold accuracy and macro-F1 of one method, and what each decision rule scored."""

    per_fold: tuple[FoldScores, ...]
    #: per decision rule (methods that predict under several): that rule's scores per fold
    decisions: dict[str, tuple[Scores, ...]]

    def values(self, metric: ProfileMetric) -> list[float]:
        """Per-fold values of ``metric`` (the reported rule's)."""
        return [row.scores[metric] for row in self.per_fold]

    def summary(self, metric: ProfileMetric) -> MeanStd:
        return MeanStd.of(self.values(metric))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "per_fold": [row.to_json() for row in self.per_fold],
            **{metric: self.summary(metric).to_json() for metric in PROFILE_METRICS},
        }
        if self.decisions:
            out["decisions"] = {
                rule: {metric: {**MeanStd.of([r[metric] for r in rows]).to_json(),
                                "per_fold": [r[metric] for r in rows]}
                       for metric in PROFILE_METRICS}
                for rule, rows in self.decisions.items()
            }
        return out


def fold_data(labels: ProfileLabels, fold: Fold, index: int) -> ProfileFold:
    """What the method of fold ``index`` may see."""
    return ProfileFold(
        index=index,
        train_users=labels.users[fold.train],
        train_labels=labels.labels[fold.train],
        test_users=labels.users[fold.test],
        pool_users=labels.users[fold.pool],
        classes=labels.classes,
    )


def evaluate_profile(
    predict_fn: PredictFn, labels: ProfileLabels, folds: Sequence[Fold]
) -> ProfileEvaluation:
    """Per-fold accuracy and macro-F1 of ``predict_fn`` (mean ± sample std over the folds).

    When ``predict_fn`` returns one prediction per decision rule, each metric reads its rule of
    :data:`METRIC_DECISION` and ``decisions`` records every metric under every rule, so a report
    can show what the choice of rule moved.
    """
    per_fold = []
    decisions: dict[str, list[Scores]] = {}
    for index, fold in enumerate(folds):
        truth = labels.labels[fold.test]
        predicted = predict_fn(fold_data(labels, fold, index))
        if isinstance(predicted, Mapping):
            by_rule = {rule: scores(truth, np.asarray(p).astype(str), labels.classes)
                       for rule, p in predicted.items()}
            for rule, rule_scores in by_rule.items():
                decisions.setdefault(rule, []).append(rule_scores)
            fold_scores: Scores = {metric: by_rule[METRIC_DECISION[metric]][metric]
                                   for metric in PROFILE_METRICS}
        else:
            fold_scores = scores(truth, np.asarray(predicted).astype(str), labels.classes)
        per_fold.append(FoldScores(index, int(fold.train.size), int(fold.test.size),
                                   fold_scores))
    return ProfileEvaluation(tuple(per_fold),
                             {rule: tuple(rows) for rule, rows in decisions.items()})
