"""Every P2 baseline of one task and regime, on the plan's folds."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from uservec.training.baselines.logistic import LogisticPredictor
from uservec.training.baselines.majority import majority_predict
from uservec.training.baselines.pooled import (
    PooledLogisticPredictor,
    PooledRows,
    SvdLogisticPredictor,
)
from uservec.training.baselines.tfidf import user_item_matrix
from uservec.training.data.dataset import PreparedDataset
from uservec.training.evaluation.kinds import ProfileBaseline
from uservec.training.evaluation.profile_eval import PredictFn, evaluate_profile
from uservec.training.evaluation.profile_results import ProfileMethodResult
from uservec.training.evaluation.profile_split import Fold, ProfileLabels

logger = logging.getLogger(__name__)


def run_profile_baselines(
    dataset: PreparedDataset, labels: ProfileLabels, folds: Sequence[Fold],
    pooled: PooledRows | None = None,
) -> dict[str, ProfileMethodResult]:
    """``majority``, ``lr`` and ``lr_bal`` on ``folds`` (of :func:`profile_folds`), by name;
    with ``pooled`` (a corpus' labelled users) also ``lr_pooled``, ``lr_bal_pooled`` and the
    corpus-SVD ``svd_lr``, ``svd_lr_bal``."""
    matrix = user_item_matrix(dataset)
    predictors: dict[ProfileBaseline, PredictFn] = {
        "majority": majority_predict,
        "lr": LogisticPredictor(matrix, balanced=False),
        "lr_bal": LogisticPredictor(matrix, balanced=True),
    }
    if pooled is not None:
        predictors["lr_pooled"] = PooledLogisticPredictor(matrix, pooled, balanced=False)
        predictors["lr_bal_pooled"] = PooledLogisticPredictor(matrix, pooled, balanced=True)
        predictors["svd_lr"] = SvdLogisticPredictor(matrix, pooled, balanced=False)
        predictors["svd_lr_bal"] = SvdLogisticPredictor(matrix, pooled, balanced=True)
    results: dict[str, ProfileMethodResult] = {}
    for name, predict in predictors.items():
        start = time.perf_counter()
        evaluation = evaluate_profile(predict, labels, folds)
        chosen = (tuple(predict.chosen_c)
                  if isinstance(predict, LogisticPredictor | PooledLogisticPredictor
                                           | SvdLogisticPredictor) else None)
        result = ProfileMethodResult(evaluation, round(time.perf_counter() - start, 2), chosen)
        results[name] = result
        accuracy, f1 = result.metric("accuracy"), result.metric("macro_f1")
        logger.info("P2 %s %s: acc %.3f ± %.3f, macro-F1 %.3f ± %.3f (%.1fs)", dataset.name,
                    name, accuracy.mean, accuracy.std, f1.mean, f1.std, result.seconds)
    return results
