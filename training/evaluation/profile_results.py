"""Typed P2 results of a task: methods and baselines per label regime, and how they compare.

``to_json()`` writes the layout of ``report.json`` (``tasks.tasks.<name>``), which readers and
the docs generator rely on; the markdown renderer and the plots read the objects themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from uservec.training.evaluation.fit_summary import FinalModel, FitSummary
from uservec.training.evaluation.kinds import (
    PROFILE_BASELINES,
    PROFILE_METRICS,
    ProfileMetric,
    Regime,
)
from uservec.training.evaluation.profile_eval import ProfileEvaluation
from uservec.training.evaluation.served import ServedBlock
from uservec.training.evaluation.statistics import MeanStd, PairedFolds, paired_folds


@dataclass(frozen=True)
class ProfileMethodResult:
    """One method or baseline on the five folds of one regime."""

    evaluation: ProfileEvaluation
    #: wall time: a baseline's whole evaluation, or the sum of a method's per-fold fits
    seconds: float
    #: ``lr``/``lr_bal``: the C chosen by inner CV in each fold
    chosen_c: tuple[float, ...] | None = None
    #: networks: each fold's fit (hyperparameters, size, time)
    fits: tuple[FitSummary, ...] | None = None

    @classmethod
    def of_fits(cls, evaluation: ProfileEvaluation,
                fits: tuple[FitSummary, ...]) -> ProfileMethodResult:
        """A network's result: the time is the sum of its (rounded) per-fold fit times."""
        return cls(evaluation, round(sum(f.seconds for f in fits), 1), fits=fits)

    def metric(self, metric: ProfileMetric) -> MeanStd:
        return self.evaluation.summary(metric)

    def per_fold(self, metric: ProfileMetric) -> list[float]:
        return self.evaluation.values(metric)

    @property
    def trainable_parameters(self) -> int | None:
        return None if not self.fits else self.fits[0].trainable_parameters

    def to_json(self) -> dict[str, Any]:
        out = self.evaluation.to_json()
        if self.fits is None:
            out["seconds"] = self.seconds
            if self.chosen_c is not None:
                out["chosen_c"] = list(self.chosen_c)
            return out
        for row, fit in zip(out["per_fold"], self.fits, strict=True):
            row.update({"trainable_parameters": fit.trainable_parameters,
                        "seconds": fit.seconds, "hyperparameters": fit.hyperparameters})
        return {**out, "trainable_parameters": self.fits[0].trainable_parameters,
                "encoder_parameters": self.fits[0].encoder_parameters, "seconds": self.seconds,
                "seconds_per_fold": round(float(np.mean([f.seconds for f in self.fits])), 1)}


#: per compared method, per metric: the paired per-fold differences
PairedTable = dict[str, dict[ProfileMetric, PairedFolds]]


@dataclass(frozen=True)
class RegimeResult:
    """Every method and baseline of one label regime, with the paired comparisons."""

    labelled_rows_per_fold: tuple[int, ...]
    #: baselines first, then the networks, in run order
    methods: dict[str, ProfileMethodResult]
    #: per metric: the baseline with the highest mean
    strongest_baseline: dict[ProfileMetric, str]
    #: every network vs the strongest baseline of each metric
    paired_vs_baseline: PairedTable
    #: the adapter vs every other network (absent without an adapter)
    paired_adapter_vs: PairedTable | None = None
    #: the served head (kind chosen per fold on validation users) vs the strongest baselines
    served: ServedBlock | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "labelled_rows_per_fold": list(self.labelled_rows_per_fold),
            "methods": {name: m.to_json() for name, m in self.methods.items()},
            "strongest_baseline": dict(self.strongest_baseline),
            "paired_vs_baseline": {
                method: {metric: {"vs": self.strongest_baseline[metric], **paired.to_json()}
                         for metric, paired in table.items()}
                for method, table in self.paired_vs_baseline.items()},
        }
        if self.paired_adapter_vs is not None:
            out["paired_adapter_vs"] = _table_json(self.paired_adapter_vs)
        if self.served is not None:
            out["served"] = self.served.to_json()
        return out


def _table_json(table: PairedTable) -> dict[str, Any]:
    return {method: {metric: paired.to_json() for metric, paired in row.items()}
            for method, row in table.items()}


def compare_regime(labelled_rows: tuple[int, ...], methods: dict[str, ProfileMethodResult],
                   networks: tuple[str, ...]) -> RegimeResult:
    """Strongest baseline per metric; every network vs it, and the adapter vs the others."""
    baselines = [name for name in PROFILE_BASELINES if name in methods]
    strongest = {metric: max(baselines, key=lambda name: methods[name].metric(metric).mean)
                 for metric in PROFILE_METRICS}

    def paired(a: str, b: str, metric: ProfileMetric) -> PairedFolds:
        return paired_folds(methods[a].per_fold(metric), methods[b].per_fold(metric))

    vs_baseline: PairedTable = {
        method: {metric: paired(method, strongest[metric], metric) for metric in PROFILE_METRICS}
        for method in networks}
    adapter_vs: PairedTable | None = None
    if "adapter" in networks:
        adapter_vs = {other: {metric: paired("adapter", other, metric)
                              for metric in PROFILE_METRICS}
                      for other in networks if other != "adapter"}
    return RegimeResult(labelled_rows, methods, dict(strongest), vs_baseline, adapter_vs)


@dataclass(frozen=True)
class ProfileTaskResult:
    """A P2 task: its labels, every regime's comparison, and the exported final model."""

    attribute: str
    classes: tuple[str, ...]
    label_distribution: dict[str, int]
    regimes: dict[Regime, RegimeResult]
    final: FinalModel
    #: regimes that could not be evaluated, with the line that says why
    skipped_regimes: dict[Regime, str] = field(default_factory=dict)
    #: wall time of the whole task (baselines, methods, final model)
    seconds: float = 0.0
    kind: Literal["profile"] = "profile"

    @property
    def labelled_users(self) -> int:
        return sum(self.label_distribution.values())

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "protocol": "P2",
            "attribute": self.attribute,
            "classes": list(self.classes),
            "label_distribution": dict(self.label_distribution),
            "labelled_users": self.labelled_users,
            "regimes": {name: regime.to_json() for name, regime in self.regimes.items()},
            "served": {name: regime.served.to_json()
                       for name, regime in self.regimes.items() if regime.served is not None},
        }
        if self.skipped_regimes:
            out["skipped_regimes"] = dict(self.skipped_regimes)
        return {**out, "final": self.final.to_json(), "seconds": self.seconds}
