"""A P2 task: baselines and every method in each label regime of the plan, then the final model.

The folds, the low-label rows and the skipped regimes come from the evaluation plan
(:class:`~training.evaluation.plan.ProfileSplit`), so baselines and methods are scored on the
same rows and a regime that cannot be evaluated was already refused before pretraining.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from uservec.training.baselines.profile import run_profile_baselines
from uservec.training.comparison.final import TaskContext, save_final, summarise_fit
from uservec.training.comparison.served_profile import (
    SERVED,
    evaluate_served,
    residual_logits,
    vocabulary_bags,
    wide_data,
)
from uservec.training.config import TaskConfig
from uservec.training.evaluation.fit_summary import FinalModel, FitSummary
from uservec.training.evaluation.kinds import (
    FULL_REGIME,
    PROFILE_BASELINES,
    PROFILE_METRICS,
    Regime,
)
from uservec.training.evaluation.plan import ProfileSplit
from uservec.training.evaluation.profile_eval import ProfileFold, evaluate_profile
from uservec.training.evaluation.profile_results import (
    ProfileMethodResult,
    ProfileTaskResult,
    RegimeResult,
    compare_regime,
)
from uservec.training.evaluation.profile_split import Fold, holdout_split
from uservec.training.evaluation.served import (
    ServedBlock,
    ServedKind,
    most_common_kind,
    served_block,
)
from uservec.training.memory import stage
from uservec.training.profile_task import fit_profile_task, predict_profile_rules
from uservec.training.task_artifact import ProfileOutputs
from uservec.training.task_selection import TaskFit
from uservec.training.wide.payload import wide_payload

logger = logging.getLogger(__name__)


def run_profile_task(task: TaskConfig, split: ProfileSplit, context: TaskContext,
                     task_dir: Path) -> tuple[ProfileTaskResult, TaskFit]:
    """Baselines and methods in every regime of ``split``, then the final model on every label."""
    regimes: dict[Regime, RegimeResult] = {}
    for regime, regime_split in split.regimes.items():
        regimes[regime] = evaluate_regime(task.name, regime, split, regime_split.folds, context)
    full = regimes.get(FULL_REGIME) or next(iter(regimes.values()), None)
    kind = "deep" if full is None or full.served is None else full.served.kind
    final, fit = fit_final(task, split, context, task_dir, kind)
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
        methods = run_profile_baselines(context.dataset, split.labels, folds,
                                        context.pooled.get(task_name))
    deep_method = context.settings.final_method
    deep_fits: list[TaskFit] = []
    for method in context.settings.methods:
        with stage(f"p2 {task_name} {regime}: {method}"):
            result = evaluate_method(method, task_name, split, folds, context,
                                     deep_fits if method == deep_method else None)
        methods[method] = result
        logger.info("P2 %s %s %s: acc %.3f macro-F1 %.3f (%d params, %.0fs)", task_name, regime,
                    method, result.metric("accuracy").mean, result.metric("macro_f1").mean,
                    result.trainable_parameters or 0, result.seconds)
    if not deep_fits:
        evaluate_method(deep_method, task_name, split, folds, context, deep_fits)
    served, kinds = evaluate_served(task_name, split, folds, context, deep_fits)
    methods.update(served)
    compared = compare_regime(tuple(int(f.train.size) for f in folds), methods,
                              (*context.settings.methods, *served))
    return dataclasses.replace(compared, served=profile_served_block(compared, kinds))


def profile_served_block(result: RegimeResult, kinds: list[ServedKind]) -> ServedBlock:
    """The regime's ``served`` block: per-fold served values against the strongest baselines."""
    methods = result.methods
    return served_block(
        most_common_kind(kinds),
        {m: methods[SERVED].per_fold(m) for m in PROFILE_METRICS},
        {b: {m: methods[b].per_fold(m) for m in PROFILE_METRICS}
         for b in PROFILE_BASELINES if b in methods},
        result.strongest_baseline, kinds)


def evaluate_method(method: str, task_name: str, split: ProfileSplit, folds: tuple[Fold, ...],
                    context: TaskContext, kept: list[TaskFit] | None = None
                    ) -> ProfileMethodResult:
    """One method fitted on each fold's labelled users (from the untouched encoder), scored.

    ``kept``, when given, receives each fold's fit (the served head's deep part).
    """
    fits: list[FitSummary] = []

    def predict(fold: ProfileFold) -> dict[str, np.ndarray]:
        fit = fit_profile_task(method, context.pristine, context.dataset, fold.train_users,
                               fold.train_labels, fold.classes, context.settings,
                               context.max_len, context.seed, task_name)
        fits.append(summarise_fit(fit))
        if kept is not None:
            kept.append(fit)
        return predict_profile_rules(fit, context.dataset, fold.test_users, context.max_len)

    evaluation = evaluate_profile(predict, split.labels, folds)
    return ProfileMethodResult.of_fits(evaluation, tuple(fits))


def fit_final(task: TaskConfig, split: ProfileSplit, context: TaskContext,
              task_dir: Path, kind: ServedKind = "deep") -> tuple[FinalModel, TaskFit]:
    """The exported model: ``final_method`` on the shared backbone, fitted on every label.

    ``kind`` is the served kind the folds chose most often on their validation users: with a
    wide part the final carries the bag model fitted on every label, and for ``wide+deep`` the
    network is trained as its residual.
    """
    labels, settings, shared = split.labels, context.settings, context.shared
    wide = None
    residual = None
    if kind != "deep":
        data = wide_data(context.dataset, vocabulary_bags(context.dataset), labels.users,
                         labels.users, labels.labels, labels.classes, settings.select_metric)
        holdout = holdout_split(data.codes, settings.valid_fraction)
        offsets, _, wide = residual_logits(data, holdout)
        if kind == "wide+deep":
            residual = offsets
    fit = fit_profile_task(settings.final_method, shared, context.dataset, labels.users,
                           labels.labels, labels.classes, settings, context.max_len, context.seed,
                           task.name, shared=True,
                           residual=None if residual is None else (lambda _: residual))
    power = fit.hyperparameters.class_weight if kind != "wide" or wide is None else wide.power
    outputs = ProfileOutputs(
        attribute=split.attribute, buckets=split.buckets,
        labels=tuple(labels.classes.tolist()),
        class_prior=None if fit.class_prior is None else tuple(fit.class_prior.tolist()),
        prior_power=power, served_kind=kind, wide=None if wide is None else wide_payload(wide))
    final = save_final(fit, context, task_dir, outputs, trained_on_users=int(labels.users.size))
    return final, fit
