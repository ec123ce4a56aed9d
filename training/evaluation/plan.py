"""Every split of an experiment, made once from the prepared data and the config.

:func:`plan_evaluation` is the one place the protocol splits of a run are computed: the P2 labels,
folds, low-label rows and validation holdouts of each profile task, and the P3 user partition of
each cross-domain task. It runs before pretraining, because the pretraining view (what P1
pretrains and evaluates on) hides the P3 test users' target events, and because a split that cannot
be made must stop the run before hours of training, not after (:mod:`feasibility`). The plan is
typed and serialisable (``to_payload``/``from_payload``): a run folder can store it, and every
later stage (tasks, probes, export metrics) reads the same splits instead of recomputing them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar, cast

import numpy as np

from uservec.training.config import ExperimentConfig, TaskConfig
from uservec.training.data.dataset import PreparedDataset
from uservec.training.evaluation.cross_domain_split import (
    CrossDomainUsers,
    cross_domain_users,
    cross_domain_view,
    hidden_target_events,
)
from uservec.training.evaluation.errors import InfeasibleEvaluation
from uservec.training.evaluation.feasibility import (
    UNKNOWN_DOMAIN_FIX,
    SplitFailure,
    cross_domain_message,
    profile_message,
    raise_problems,
    skip_message,
)
from uservec.training.evaluation.kinds import FULL_REGIME, Regime, regime_fraction, regime_key
from uservec.training.evaluation.profile_split import (
    NUM_FOLDS,
    Fold,
    ProfileLabels,
    class_counts,
    holdout_split,
    labelled_rows,
    outer_folds,
    profile_labels,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class RegimeSplit:
    """The five P2 folds of one label regime, with each fold's validation holdout."""

    folds: tuple[Fold, ...]
    #: per fold: the task-training holdout, positions into that fold's ``train`` rows
    holdouts: tuple[Fold, ...]

    def to_payload(self) -> dict[str, Any]:
        return {"folds": [f.to_payload() for f in self.folds],
                "holdouts": [h.to_payload() for h in self.holdouts]}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> RegimeSplit:
        return cls(tuple(Fold.from_payload(f) for f in payload["folds"]),
                   tuple(Fold.from_payload(h) for h in payload["holdouts"]))


@dataclass(frozen=True, eq=False)
class ProfileSplit:
    """Every P2 split of one profile task."""

    attribute: str
    buckets: tuple[float, ...] | None
    labels: ProfileLabels
    #: the regimes that can be evaluated, in run order
    regimes: dict[Regime, RegimeSplit]
    #: regimes that cannot, with the report line that says why
    skipped: dict[Regime, str] = field(default_factory=dict)
    #: the final model's holdout over every labelled user
    final_holdout: Fold | None = None

    def to_payload(self) -> dict[str, Any]:
        return {
            "attribute": self.attribute,
            "buckets": None if self.buckets is None else list(self.buckets),
            "users": self.labels.users.tolist(),
            "labels": self.labels.labels.tolist(),
            "classes": self.labels.classes.tolist(),
            "regimes": {name: split.to_payload() for name, split in self.regimes.items()},
            "skipped": dict(self.skipped),
            "final_holdout": None if self.final_holdout is None
            else self.final_holdout.to_payload(),
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ProfileSplit:
        labels = ProfileLabels(np.asarray(payload["users"], dtype=np.int64),
                               np.asarray(payload["labels"], dtype=str),
                               np.asarray(payload["classes"], dtype=str))
        final = payload.get("final_holdout")
        buckets = payload.get("buckets")
        return cls(
            attribute=str(payload["attribute"]),
            buckets=None if buckets is None else tuple(float(b) for b in buckets),
            labels=labels,
            regimes={cast(Regime, name): RegimeSplit.from_payload(split)
                     for name, split in payload["regimes"].items()},
            skipped={cast(Regime, name): str(line) for name, line in payload["skipped"].items()},
            final_holdout=None if final is None else Fold.from_payload(final),
        )


@dataclass(frozen=True, eq=False)
class EvaluationPlan:
    """The splits of every task of a config, by task name (in config order)."""

    profile: dict[str, ProfileSplit]
    cross_domain: dict[str, CrossDomainUsers]

    def to_payload(self) -> dict[str, Any]:
        return {"profile": {name: p.to_payload() for name, p in self.profile.items()},
                "cross_domain": {name: u.to_payload() for name, u in self.cross_domain.items()}}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> EvaluationPlan:
        return cls({name: ProfileSplit.from_payload(p) for name, p in payload["profile"].items()},
                   {name: CrossDomainUsers.from_payload(u)
                    for name, u in payload["cross_domain"].items()})

    def pretraining_mask(self, dataset: PreparedDataset) -> np.ndarray:
        """(E,) events one shared backbone may pretrain on: all but every target's hidden events.

        Hidden = the target-domain events of each target's test users; with a published split
        also the validation users' target events (they are not training users there, and tuning
        on users whose answers pretraining saw would flatter the chosen hyperparameters). With a
        split of our own the validation users are drawn from the training users, whose target
        events are training data (the refit reads them), so pretraining keeps them: P3 allows it,
        and it can only bias which hyperparameters validation picks, never what the test users
        are scored on.
        """
        mask = np.ones(dataset.num_events, dtype=bool)
        for users in self.cross_domain.values():
            mask &= ~hidden_target_events(dataset, users.target_domain, users.test)
            if users.published:
                mask &= ~hidden_target_events(dataset, users.target_domain, users.validation)
        return mask

    def pretraining_view(self, dataset: PreparedDataset) -> PreparedDataset:
        """Events the one shared backbone may see: all but each P3 target's held-out events.

        P3 (docs/protocols.md#p3-cross-domain-cold-start) allows one backbone for every task
        when it never sees the target-domain events of any declared target's test users; P1 then
        evaluates on the same view. The view's fingerprint differs from the dataset's whenever
        events are hidden, so an encoder records which view it was pretrained on.
        """
        targets = [users.target_domain for users in self.cross_domain.values()]
        if not targets:
            return dataset
        keep = self.pretraining_mask(dataset)
        logger.info("pretraining view hides %d held-out target events of %s",
                    int((~keep).sum()), targets)
        return dataset.restrict_events(keep, f"P3 test users' events in {', '.join(targets)}")


def plan_evaluation(cfg: ExperimentConfig, dataset: PreparedDataset) -> EvaluationPlan:
    """Make every split of ``cfg.tasks`` on ``dataset``, or stop naming each one that cannot be.

    Raises :class:`InfeasibleEvaluation` listing every task that cannot be evaluated; a P2
    low-label regime that cannot be made is skipped instead (logged, and kept in the plan's
    ``skipped`` for the report).
    """
    valid_fraction = cfg.adapt.valid_fraction
    fractions = cfg.eval.label_fractions
    problems: list[str] = []
    profile: dict[str, ProfileSplit] = {}
    cross_domain: dict[str, CrossDomainUsers] = {}
    for task in cfg.tasks:
        try:
            if task.kind == "profile":
                profile[task.name] = plan_profile_task(task, dataset, valid_fraction, fractions)
            elif task.kind == "cross_domain":
                cross_domain[task.name] = plan_cross_domain_task(task, dataset)
            else:
                problems.append(f"task {task.name!r}: kind must be profile|cross_domain, "
                                f"got {task.kind!r}")
        except InfeasibleEvaluation as exc:
            problems.append(str(exc))
    raise_problems(problems)
    return EvaluationPlan(profile, cross_domain)


def plan_cross_domain_task(task: TaskConfig, dataset: PreparedDataset) -> CrossDomainUsers:
    """The P3 partition of one task, checked to leave users to tune and test on."""
    target = task.target_domain
    if target is None:
        raise InfeasibleEvaluation(
            f"task {task.name!r}: a cross_domain task needs a target_domain")
    if target not in dataset.domains:
        raise InfeasibleEvaluation(cross_domain_message(
            task.name, target, f"{dataset.name} has no domain {target!r} (it has "
            f"{list(dataset.domains)})", UNKNOWN_DOMAIN_FIX))
    try:
        users = cross_domain_users(dataset, target)
    except InfeasibleEvaluation as exc:
        raise InfeasibleEvaluation(cross_domain_message(task.name, target, str(exc))) from exc
    split = cross_domain_view(dataset, users)
    assert split.validation is not None
    for name, round_ in (("test", split), ("validation", split.validation)):
        if round_.test_users.size == 0:
            left_out = round_.left_out_users.size
            raise InfeasibleEvaluation(cross_domain_message(
                task.name, target, f"none of its {left_out} {name} users has a {target} item "
                "among the candidates (the items of the training users), so there is nothing "
                "to rank"))
    return users


def plan_profile_task(task: TaskConfig, dataset: PreparedDataset, valid_fraction: float,
                      fractions: Sequence[float] = (1.0,)) -> ProfileSplit:
    """The P2 splits of one task: every label (or stop), each smaller regime (or skip it).

    ``fractions`` are the labelled shares of each training fold (``eval.label_fractions``); a
    task with ``low_label = false`` gets only 1.0. Regimes are kept in increasing fraction.
    """
    if task.attribute is None:
        raise InfeasibleEvaluation(f"task {task.name!r}: a profile task needs an attribute")
    try:
        labels = profile_labels(dataset, task.attribute, task.buckets)
    except KeyError as exc:
        raise InfeasibleEvaluation(
            f"task {task.name!r}: {exc.args[0]}. Fix: set attribute to a column of the users "
            "file (data.users_path), or remove the task") from exc
    wanted = [regime_key(f) for f in sorted(fractions if task.low_label else (1.0,))]
    regimes: dict[Regime, RegimeSplit] = {}
    skipped: dict[Regime, str] = {}
    try:
        outer = checked_outer_folds(labels)
        final = attempt("holdout", None, labels.labels, labels.classes,
                        lambda: holdout_split(labels.codes(), valid_fraction),
                        _holdout_reason(valid_fraction))
        for regime in wanted:
            try:
                regimes[regime] = regime_split(regime, labels, outer, valid_fraction)
            except SplitFailure as failure:
                if regime == FULL_REGIME:
                    raise
                skipped[regime] = skip_message(failure)
                logger.warning("task %s: %s regime %s", task.name, regime, skipped[regime])
    except SplitFailure as failure:
        raise InfeasibleEvaluation(
            profile_message(task.name, task.attribute, failure)) from failure
    return ProfileSplit(task.attribute, task.buckets, labels, regimes, skipped, final)


def checked_outer_folds(labels: ProfileLabels) -> list[tuple[np.ndarray, np.ndarray]]:
    """The P2 outer folds, after the checks sklearn would fail (or a task could not mean) on."""
    counts = labels.counts()
    where = None  # every labelled user
    if labels.classes.size < 2:
        raise SplitFailure("classes", where, counts, "fall in fewer than two classes: there "
                           "is nothing to predict")
    if max(counts.values()) < NUM_FOLDS:
        raise SplitFailure("folds", where, counts, f"are too few for {NUM_FOLDS} stratified "
                           f"folds (no class has {NUM_FOLDS} users)")
    return attempt("folds", where, labels.labels, labels.classes,
                   lambda: outer_folds(labels.users, labels.labels),
                   f"cannot be cut into {NUM_FOLDS} stratified folds")


def regime_split(regime: Regime, labels: ProfileLabels,
                 outer: Sequence[tuple[np.ndarray, np.ndarray]],
                 valid_fraction: float) -> RegimeSplit:
    """Each fold's labelled rows under ``regime`` and the holdout task training tunes on."""
    codes = labels.codes()
    folds, holdouts = [], []
    for index, (train, test) in enumerate(outer):
        where = f"fold {index} of the {regime} regime"
        fraction = regime_fraction(regime)
        labelled = train
        if fraction < 1.0:
            labelled = attempt("label_fraction", where, labels.labels[train], labels.classes,
                               partial(labelled_rows, train, labels.labels, fraction),
                               f"cannot give a stratified {fraction:.0%} labelled subset with "
                               "a row of every class")
        holdouts.append(attempt("holdout", where, labels.labels[labelled], labels.classes,
                                partial(holdout_split, codes[labelled], valid_fraction,
                                        small=fraction < 1.0),
                                _holdout_reason(valid_fraction)))
        folds.append(Fold(train=labelled, test=test, pool=train))
    return RegimeSplit(tuple(folds), tuple(holdouts))


def _holdout_reason(valid_fraction: float) -> str:
    return (f"cannot hold out a stratified {valid_fraction:.0%} for validation with one user of "
            "each class in both parts")


def attempt(split: str, where: str | None, rows: np.ndarray, classes: np.ndarray,
               make: Callable[[], T], reason: str) -> T:
    """``make()``, or a :class:`SplitFailure` with the rows' class counts if sklearn refuses."""
    try:
        return make()
    except ValueError as exc:
        counts = class_counts(rows, classes)
        raise SplitFailure(split, where, counts, f"{reason} (sklearn: {exc})") from exc


def pretraining_view(cfg: ExperimentConfig, dataset: PreparedDataset,
                     plan: EvaluationPlan | None = None) -> PreparedDataset:
    """The P1 view of ``dataset``: what the shared backbone pretrains and is evaluated on.

    It hides the P3 test users' target events, so it follows from the plan; without one the plan
    is made here, and a config that cannot be evaluated stops here, before any pretraining.
    """
    return (plan if plan is not None else plan_evaluation(cfg, dataset)).pretraining_view(dataset)
