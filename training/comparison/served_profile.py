"""The served profile head of each fold: wide, deep or wide+deep, chosen on validation users.

Per fold, on the fold's labelled training users only:

* ``wide``: the bag logistic regression (:mod:`training.wide.profile`), power and C by inner CV;
* ``deep``: the final method's fit (the adapter), as evaluated beside the baselines;
* ``wide+deep``: the same method trained as a residual on the wide part's out-of-fold logits.

The three are scored on the fold's validation holdout (the one the networks early-stop on; the
wide part is refitted without it for this), the best is the fold's served kind, and the test
fold is predicted by each kind once. The test fold never enters a choice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from uservec.contract.ids import NUM_RESERVED
from uservec.training.comparison.final import TaskContext
from uservec.training.data.dataset import PreparedDataset
from uservec.training.evaluation.bags import binary_matrix, event_users
from uservec.training.evaluation.plan import ProfileSplit
from uservec.training.evaluation.profile_eval import ProfileFold, evaluate_profile, fold_data
from uservec.training.evaluation.profile_results import ProfileMethodResult
from uservec.training.evaluation.profile_split import Fold, class_codes, holdout_split
from uservec.training.evaluation.served import (
    ServedKind,
    choose_kind,
    proportion_standard_error,
)
from uservec.training.profile_task import (
    ResidualLogits,
    fit_profile_task,
    profile_logits,
    rule_predictions,
)
from uservec.training.task_selection import TaskFit
from uservec.training.wide.profile import ProfileWide, WideData, rule_columns, rule_score

logger = logging.getLogger(__name__)

#: report names of the wide-and-deep rows (the served row reads the kind each fold chose)
WIDE, WIDE_DEEP, SERVED = "wide", "wide+deep", "served"


def vocabulary_bags(dataset: PreparedDataset) -> sp.csr_matrix:
    """(U, V) binary user x vocabulary-id bags: what the service can rebuild from events."""
    return binary_matrix(event_users(dataset), dataset.items,
                         (dataset.num_users, dataset.vocab.size))


def item_columns(dataset: PreparedDataset) -> np.ndarray:
    """Vocabulary ids a wide part may read: every item id (padding, UNK and MASK excluded)."""
    return np.arange(NUM_RESERVED, dataset.vocab.size)


def best_validation(fit: TaskFit) -> float:
    """The validation score of the grid point a fit chose (on its holdout, never the test)."""
    return max(float(point["valid"]) for point in fit.tuning)


@dataclass(frozen=True, eq=False)
class ServedFold:
    """One fold's validation scores per kind, the chosen kind, and each kind's predictions."""

    kind: ServedKind
    validation: dict[ServedKind, float]
    #: per kind (``wide``, ``deep``, ``wide+deep``), per decision rule: (N_test,) class names
    predictions: dict[str, dict[str, np.ndarray]]


def wide_data(dataset: PreparedDataset, matrix: sp.csr_matrix, users: np.ndarray,
              pool_users: np.ndarray, labels: np.ndarray, classes: np.ndarray,
              metric: str) -> WideData:
    """What a wide part of ``users`` (labelled ``labels``) is fitted from."""
    return WideData(matrix, pool_users, users, class_codes(labels, classes), int(classes.size),
                    metric, allowed=item_columns(dataset))


def residual_logits(data: WideData, holdout: Fold) -> tuple[ResidualLogits, ProfileWide,
                                                            ProfileWide]:
    """Offsets for a residual fit on ``holdout``, and the wide parts on its train rows / all."""
    tune_wide = data.fit(holdout.train)
    full_wide = data.fit(np.arange(data.users.size))
    valid = tune_wide.logits(data.matrix[data.users[holdout.test]])
    offsets = ResidualLogits(
        tune=data.out_of_fold_logits(holdout.train, tune_wide), valid=valid,
        refit=data.out_of_fold_logits(np.arange(data.users.size), full_wide))
    return offsets, tune_wide, full_wide


def served_fold(fold: ProfileFold, deep: TaskFit, context: TaskContext, task_name: str,
                matrix: sp.csr_matrix) -> ServedFold:
    """Fit wide and wide+deep on the fold's labelled users; choose the kind on validation."""
    settings, dataset = context.settings, context.dataset
    data = wide_data(dataset, matrix, fold.train_users, fold.pool_users, fold.train_labels,
                     fold.classes, settings.select_metric)
    holdout = holdout_split(data.codes, settings.valid_fraction, small=True)
    offsets, tune_wide, full_wide = residual_logits(data, holdout)
    residual = fit_profile_task(deep.method, context.pristine, dataset, fold.train_users,
                                fold.train_labels, fold.classes, settings, context.max_len,
                                context.seed, task_name, residual=lambda _: offsets)
    valid_codes = data.codes[holdout.test]
    validation: dict[ServedKind, float] = {
        "wide": rule_score(valid_codes, rule_columns(offsets.valid, tune_wide.shift),
                           data.n_classes, settings.select_metric),
        "deep": best_validation(deep),
        "wide+deep": best_validation(residual),
    }
    margin = proportion_standard_error(validation["wide"], int(holdout.test.size))
    kind = choose_kind(validation, margin)
    wide_test = full_wide.logits(matrix[fold.test_users])
    deep_test = profile_logits(deep, dataset, fold.test_users, context.max_len)
    both_test = wide_test + profile_logits(residual, dataset, fold.test_users, context.max_len)
    classes = np.asarray(fold.classes).astype(str)
    columns = {
        "wide": rule_predictions(wide_test, full_wide.shift),
        "deep": rule_predictions(deep_test, _shift(deep)),
        "wide+deep": rule_predictions(both_test, _shift(residual)),
    }
    predictions = {name: {str(rule): classes[c] for rule, c in by_rule.items()}
                   for name, by_rule in columns.items()}
    logger.info("P2 %s fold %d: served %s (validation %s)", task_name, fold.index, kind,
                {k: round(v, 4) for k, v in validation.items()})
    return ServedFold(kind, validation, predictions)


def _shift(fit: TaskFit) -> np.ndarray:
    shift = fit.logit_shift
    return np.zeros(fit.outputs.size) if shift is None else shift


def evaluate_served(task_name: str, split: ProfileSplit, folds: Sequence[Fold],
                    context: TaskContext, deep_fits: Sequence[TaskFit]
                    ) -> tuple[dict[str, ProfileMethodResult], list[ServedKind]]:
    """``wide``, ``wide+deep`` and ``served`` results on ``folds``, and each fold's kind."""
    matrix = vocabulary_bags(context.dataset)
    outcomes: list[ServedFold] = []
    seconds: list[float] = []
    for index, fold in enumerate(folds):
        start = time.perf_counter()
        outcomes.append(served_fold(fold_data(split.labels, fold, index), deep_fits[index],
                                    context, task_name, matrix))
        seconds.append(time.perf_counter() - start)
    results: dict[str, ProfileMethodResult] = {}
    for name in (WIDE, WIDE_DEEP, SERVED):

        def predict(fold: ProfileFold, name: str = name) -> dict[str, np.ndarray]:
            outcome = outcomes[fold.index]
            kind = outcome.kind if name == SERVED else name
            return outcome.predictions[kind]

        evaluation = evaluate_profile(predict, split.labels, folds)
        results[name] = ProfileMethodResult(evaluation, round(sum(seconds), 1))
    return results, [outcome.kind for outcome in outcomes]
