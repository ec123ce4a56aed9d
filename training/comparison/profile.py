"""A P2 task: baselines and every method in each label regime of the plan, then the final model.

The folds, the low-label rows and the skipped regimes come from the evaluation plan
(:class:`~training.evaluation.plan.ProfileSplit`), so baselines and methods are scored on the
same rows and a regime that cannot be evaluated was already refused before pretraining.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from uservec.training.baselines.profile import run_profile_baselines
from uservec.training.comparison.final import TaskContext, save_final, summarise_fit
from uservec.training.config import TaskConfig
from uservec.training.evaluation.fit_summary import FinalModel, FitSummary
from uservec.training.evaluation.kinds import Regime
from uservec.training.evaluation.plan import ProfileSplit
from uservec.training.evaluation.profile_eval import ProfileFold, evaluate_profile
from uservec.training.evaluation.profile_results import (
    ProfileMethodResult,
    ProfileTaskResult,
    RegimeResult,
    compare_regime,
)
from uservec.training.evaluation.profile_split import Fold
from uservec.training.memory import stage
from uservec.training.profile_task import fit_profile_task, predict_profile_rules
from uservec.training.task_artifact import ProfileOutputs
from uservec.training.task_selection import TaskFit

logger = logging.getLogger(__name__)


def run_profile_task(task: TaskConfig, split: ProfileSplit, context: TaskContext,
                     task_dir: Path) -> tuple[ProfileTaskResult, TaskFit]:
    """Baselines and methods in every regime of ``split``, then the final model on every label."""
    regimes: dict[Regime, RegimeResult] = {}
    for regime, regime_split in split.regimes.items():
        regimes[regime] = evaluate_regime(task.name, regime, split, regime_split.folds, context)
    final, fit = fit_final(task, split, context, task_dir)
    result = ProfileTaskResult(
        attribute=split.attribute,
        classes=tuple(split.labels.classes.tolist()),
        label_distribution=split.labels.counts(),
        regimes=regimes,
        final=final,
        skipped_regimes=dict(split.skipped),
    )
    return result, fit


def evaluate_regime(task_name: str, regime: Regime, split: ProfileSplit,
                    folds: tuple[Fold, ...], context: TaskContext) -> RegimeResult:
    """Every baseline and method of one regime on its folds, with the paired comparisons."""
    with stage(f"p2 {task_name} {regime}: baselines"):
        methods = run_profile_baselines(context.dataset, split.labels, folds)
    for method in context.settings.methods:
        with stage(f"p2 {task_name} {regime}: {method}"):
            result = evaluate_method(method, task_name, split, folds, context)
        methods[method] = result
        logger.info("P2 %s %s %s: acc %.3f macro-F1 %.3f (%d params, %.0fs)", task_name, regime,
                    method, result.metric("accuracy").mean, result.metric("macro_f1").mean,
                    result.trainable_parameters or 0, result.seconds)
    return compare_regime(tuple(int(f.train.size) for f in folds), methods,
                          tuple(context.settings.methods))


def evaluate_method(method: str, task_name: str, split: ProfileSplit, folds: tuple[Fold, ...],
                    context: TaskContext) -> ProfileMethodResult:
    """One method fitted on each fold's labelled users (from the untouched encoder), scored."""
    fits: list[FitSummary] = []

    def predict(fold: ProfileFold) -> dict[str, np.ndarray]:
        fit = fit_profile_task(method, context.pristine, context.dataset, fold.train_users,
                               fold.train_labels, fold.classes, context.settings,
                               context.max_len, context.seed, task_name)
        fits.append(summarise_fit(fit))
        return predict_profile_rules(fit, context.dataset, fold.test_users, context.max_len)

    evaluation = evaluate_profile(predict, split.labels, folds)
    return ProfileMethodResult.of_fits(evaluation, tuple(fits))


def fit_final(task: TaskConfig, split: ProfileSplit, context: TaskContext,
              task_dir: Path) -> tuple[FinalModel, TaskFit]:
    """The exported model: ``final_method`` on the shared backbone, fitted on every label."""
    labels, settings, shared = split.labels, context.settings, context.shared
    fit = fit_profile_task(settings.final_method, shared, context.dataset, labels.users,
                           labels.labels, labels.classes, settings, context.max_len, context.seed,
                           task.name, shared=True)
    outputs = ProfileOutputs(
        attribute=split.attribute, buckets=split.buckets,
        labels=tuple(labels.classes.tolist()),
        class_prior=None if fit.class_prior is None else tuple(fit.class_prior.tolist()),
        prior_power=fit.hyperparameters.class_weight)
    final = save_final(fit, context, task_dir, outputs, trained_on_users=int(labels.users.size))
    return final, fit
