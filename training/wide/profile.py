"""The wide part of a profile head: a logistic regression on the TF-IDF item bag.

The bag baselines (``lr``, ``lr_bal``; docs/protocols.md#p2-user-profile-prediction) beat every
neural profile head on real data, so a served head starts from one of them and lets the network
add to its logits (wide & deep). :func:`fit_profile_wide` picks the class weighting (power 0 =
``lr``, 1 = ``lr_bal``) and C by inner CV on the training users only, scored like the network
heads: accuracy under the prior-adjusted rule, macro-F1 as trained. :func:`out_of_fold_logits`
gives the training users' logits from models that never saw them, so a residual network learns
what the bag misses, not what an overfitted bag already memorised::

    data = WideData(matrix, pool_users, users, codes, n_classes, "mean")
    wide = data.fit(np.arange(users.size))
    logits = wide.logits(matrix[test_users])
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from uservec.contract import decision
from uservec.contract.decision import Decision
from uservec.training.baselines.logistic import fit_lr, select_c
from uservec.training.evaluation.classification import accuracy, macro_f1
from uservec.training.evaluation.profile_eval import METRIC_DECISION
from uservec.training.evaluation.profile_split import inner_folds
from uservec.training.wide.bag import BagTransform

#: class-weight powers the wide part chooses between: 0 = ``lr``, 1 = ``lr_bal``
WIDE_POWERS: tuple[float, ...] = (0.0, 1.0)
#: folds of the cross-fitting that gives the training users out-of-fold logits
CROSS_FIT_FOLDS = 3
#: logit of a class absent from the training labels, below every fitted class
_ABSENT_MARGIN = 10.0


@dataclass(frozen=True, eq=False)
class ProfileWide:
    """A fitted wide part: logits = TF-IDF(bag) @ weight.T + bias, in head output order."""

    bag: BagTransform
    #: (C, V_w) per-item class weights and (C,) biases
    weight: np.ndarray
    bias: np.ndarray
    #: class-weight power it was trained with (the prior-adjusted rule undoes it)
    power: float
    c: float
    #: (C,) label frequencies of its training users
    prior: np.ndarray

    def logits(self, bags: sp.csr_matrix) -> np.ndarray:
        """(N, C) class logits of the users' binary (N, I) item bags."""
        return np.asarray(self.bag.transform(bags) @ self.weight.T) + self.bias

    @property
    def shift(self) -> np.ndarray:
        """(C,) what the prior-adjusted decision adds to the logits."""
        return decision.prior_shift(self.prior, self.power)


def class_weight_map(codes: np.ndarray, n_classes: int, power: float) -> dict[int, float]:
    """sklearn ``class_weight`` (n / (C_present * n_c)) ** power of the present classes."""
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    present = np.flatnonzero(counts)
    return {int(c): float((codes.size / (present.size * counts[c])) ** power) for c in present}


def _full_logits(model_classes: np.ndarray, coef: np.ndarray, intercept: np.ndarray,
                 n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(C, V) weights and (C,) biases over every class from sklearn's fitted rows."""
    if coef.shape[0] == 1:  # binary: sklearn keeps one row, the logit of classes_[1]
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-1, 1]) * intercept / 2
    weight = np.zeros((n_classes, coef.shape[1]))
    bias = np.full(n_classes, float(np.min(intercept)) - _ABSENT_MARGIN)
    rows = model_classes.astype(np.int64)
    weight[rows], bias[rows] = coef, intercept
    return weight, bias


def fit_logits(x: sp.csr_matrix, codes: np.ndarray, n_classes: int, power: float,
               c: float) -> tuple[np.ndarray, np.ndarray]:
    """(C, V) weights and (C,) biases of one class-weighted logistic regression."""
    present = np.unique(codes)
    if present.size < 2:
        bias = np.full(n_classes, -_ABSENT_MARGIN)
        bias[int(present[0])] = 0.0
        return np.zeros((n_classes, x.shape[1])), bias
    model = fit_lr(x, codes, c, class_weight_map(codes, n_classes, power))
    return _full_logits(model.classes_, model.coef_, model.intercept_, n_classes)


def rule_columns(logits: np.ndarray, shift: np.ndarray) -> dict[Decision, np.ndarray]:
    """(N,) argmax per decision rule (``as_trained``, ``prior_adjusted``)."""
    return {"as_trained": logits.argmax(1), "prior_adjusted": (logits + shift).argmax(1)}


def rule_score(truth: np.ndarray, predicted: dict[Decision, np.ndarray], n_classes: int,
               metric: str) -> float:
    """Accuracy, macro-F1 or their mean, each metric read under its decision rule."""
    acc = accuracy(truth, predicted[METRIC_DECISION["accuracy"]])
    f1 = macro_f1(truth, predicted[METRIC_DECISION["macro_f1"]], np.arange(n_classes))
    return {"accuracy": acc, "macro_f1": f1, "mean": (acc + f1) / 2}[metric]


def class_prior(codes: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    return counts / counts.sum()


@dataclass(frozen=True, eq=False)
class WideData:
    """Everything a wide part of one fold is fitted from (no test user in it)."""

    #: (U, I) binary user x catalog-item bags of every dataset user
    matrix: sp.csr_matrix
    #: training-fold users (labelled or not): the bag vocabulary and IDF come from them
    pool_users: np.ndarray
    #: labelled training users and their class codes (head output order)
    users: np.ndarray
    codes: np.ndarray
    n_classes: int
    #: "accuracy", "macro_f1" or "mean", each read under its decision rule
    metric: str
    #: vocabulary restriction (catalog columns the served model can read); None = all
    allowed: np.ndarray | None = None

    def bag(self) -> BagTransform:
        return BagTransform.fit(self.matrix[self.pool_users], allowed=self.allowed)

    def fit(self, rows: np.ndarray) -> ProfileWide:
        """The wide part on ``users[rows]``: power and C by inner CV on those rows only."""
        bag = self.bag()
        x, codes = bag.transform(self.matrix[self.users[rows]]), self.codes[rows]
        best: tuple[float, float, float] | None = None
        for power in WIDE_POWERS:
            c, score = self._select_c(x, codes, power)
            if best is None or score > best[0]:
                best = (score, power, c)
        assert best is not None
        _, power, c = best
        weight, bias = fit_logits(x, codes, self.n_classes, power, c)
        return ProfileWide(bag, weight, bias, power, c, class_prior(codes, self.n_classes))

    def _select_c(self, x: sp.csr_matrix, codes: np.ndarray, power: float) -> tuple[float, float]:
        shift_prior = class_prior(codes, self.n_classes)

        def predict(train: sp.csr_matrix, labels: np.ndarray, test: sp.csr_matrix,
                    c: float) -> dict[Decision, np.ndarray]:
            weight, bias = fit_logits(train, labels, self.n_classes, power, c)
            logits = np.asarray(test @ weight.T) + bias
            return rule_columns(logits, decision.prior_shift(shift_prior, power))

        c, scores = select_c(x, codes, np.arange(self.n_classes), balanced=False,
                             predict=predict, score=self.score)
        return c, (max(scores) if scores else -math.inf)

    def score(self, truth: np.ndarray, predicted: dict[Decision, np.ndarray]) -> float:
        """The network heads' validation criterion (``profile_task.profile_score``)."""
        return rule_score(truth, predicted, self.n_classes, self.metric)

    def out_of_fold_logits(self, rows: np.ndarray, wide: ProfileWide) -> np.ndarray:
        """(len(rows), C) logits of ``users[rows]``, each from a fit that did not see it.

        Cross-fitting with ``wide``'s bag, power and C on ``CROSS_FIT_FOLDS`` stratified folds of
        ``rows``; too few rows to split: ``wide``'s own (in-sample) logits.
        """
        codes = self.codes[rows]
        x = wide.bag.transform(self.matrix[self.users[rows]])
        _, counts = np.unique(codes, return_counts=True)
        n_splits = min(CROSS_FIT_FOLDS, int(counts.max()))
        if n_splits < 2:
            return wide.logits(self.matrix[self.users[rows]])
        out = np.zeros((rows.size, self.n_classes))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            folds = inner_folds(codes, n_splits=n_splits)
        for fold in folds:
            weight, bias = fit_logits(x[fold.train], codes[fold.train], self.n_classes,
                                      wide.power, wide.c)
            out[fold.test] = np.asarray(x[fold.test] @ weight.T) + bias
        return out
