"""Typed P3 results of a task: methods and baselines on the test users, and how they compare.

``to_json()`` writes the layout of ``report.json`` (``tasks.tasks.<name>``); per-user values stay
in the objects (the paired tests read them) and are not written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from uservec.training.evaluation.fit_summary import FinalModel, FitSummary
from uservec.training.evaluation.kinds import CROSS_DOMAIN_BASELINES
from uservec.training.evaluation.ranking_eval import RankingEvaluation
from uservec.training.evaluation.served import ServedBlock
from uservec.training.evaluation.statistics import MeanSe, PairedUsers, paired_users

#: the metric P3 methods are compared on
COMPARED_METRIC = "ndcg"


@dataclass(frozen=True)
class RidgeChoice:
    """The ridge baseline's penalty and the validation NDCG of every grid point."""

    lam: float
    #: ``f"{lambda:g}"`` -> mean validation NDCG@k
    validation_ndcg: dict[str, float]


@dataclass(frozen=True)
class CrossDomainMethodResult:
    """One method or baseline on the P3 test users."""

    evaluation: RankingEvaluation
    seconds: float
    ridge: RidgeChoice | None = None
    #: networks: the fit (hyperparameters, size, time, tuning)
    fit: FitSummary | None = None

    def metric(self, metric: str) -> MeanSe:
        return self.evaluation.summary(metric)

    @property
    def trainable_parameters(self) -> int | None:
        return None if self.fit is None else self.fit.trainable_parameters

    def to_json(self) -> dict[str, Any]:
        out = self.evaluation.to_json(per_user=False)
        if self.ridge is not None:
            out.update({"lambda": self.ridge.lam, "validation_ndcg": self.ridge.validation_ndcg})
        if self.fit is None:
            return {**out, "seconds": self.seconds}
        return {**out, "trainable_parameters": self.fit.trainable_parameters,
                "encoder_parameters": self.fit.encoder_parameters, "seconds": self.fit.seconds,
                "hyperparameters": self.fit.hyperparameters, "tuning": self.fit.tuning}


@dataclass(frozen=True)
class CrossDomainTaskResult:
    """A P3 task: its split, every method beside the baselines, and the exported final model."""

    target_domain: str
    k: int
    #: sizes of the split (:meth:`CrossDomainSplit.summary`)
    split: dict[str, object]
    candidates: int
    #: baselines first, then the networks, in run order
    methods: dict[str, CrossDomainMethodResult]
    strongest_baseline: str
    #: every network vs the strongest baseline (per-user NDCG@k differences)
    paired_vs_baseline: dict[str, PairedUsers]
    #: the adapter vs every other network (absent without an adapter)
    paired_adapter_vs: dict[str, PairedUsers] | None
    final: FinalModel
    seconds: float = 0.0
    kind: Literal["cross_domain"] = "cross_domain"
    #: the served head (kind chosen on the validation users) vs the strongest baseline
    served: ServedBlock | None = None
    #: the wide part's rank, size and test NDCG beside the full ridge's
    wide: dict[str, Any] | None = None

    @property
    def metric_key(self) -> str:
        return f"{COMPARED_METRIC}@{self.k}"

    def to_json(self) -> dict[str, Any]:
        key = self.metric_key
        out: dict[str, Any] = {
            "kind": self.kind,
            "protocol": "P3",
            "target_domain": self.target_domain,
            "k": self.k,
            "split": dict(self.split),
            "candidates": self.candidates,
            "methods": {name: m.to_json() for name, m in self.methods.items()},
            "strongest_baseline": self.strongest_baseline,
            "paired_vs_baseline": {
                method: {key: {"vs": self.strongest_baseline, **paired.to_json()}}
                for method, paired in self.paired_vs_baseline.items()},
        }
        if self.paired_adapter_vs is not None:
            out["paired_adapter_vs"] = {other: {key: paired.to_json()}
                                        for other, paired in self.paired_adapter_vs.items()}
        if self.served is not None:
            out["served"] = {"1.0": self.served.to_json()}
        if self.wide is not None:
            out["wide"] = dict(self.wide)
        return {**out, "final": self.final.to_json(), "seconds": self.seconds}


@dataclass(frozen=True)
class CrossDomainComparison:
    """The strongest baseline and the paired per-user comparisons of a P3 task."""

    strongest_baseline: str
    paired_vs_baseline: dict[str, PairedUsers]
    paired_adapter_vs: dict[str, PairedUsers] | None


def compare_cross_domain(methods: dict[str, CrossDomainMethodResult],
                         networks: tuple[str, ...]) -> CrossDomainComparison:
    """Strongest baseline by mean NDCG@k; every network vs it, and the adapter vs the others."""

    def ndcg(name: str) -> np.ndarray:
        return methods[name].evaluation.per_user[COMPARED_METRIC]

    strongest = max(CROSS_DOMAIN_BASELINES,
                    key=lambda name: methods[name].metric(COMPARED_METRIC).mean)
    vs_baseline = {m: paired_users(ndcg(m), ndcg(strongest)) for m in networks}
    adapter_vs = None
    if "adapter" in networks:
        adapter_vs = {other: paired_users(ndcg("adapter"), ndcg(other))
                      for other in networks if other != "adapter"}
    return CrossDomainComparison(strongest, vs_baseline, adapter_vs)
