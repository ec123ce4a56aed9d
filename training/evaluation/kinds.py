"""The closed vocabularies of evaluation as ``Literal`` types: a typo is a type error, not a key.

Each literal has its tuple of values beside it (``get_args``), in the order reports list them.
Task kinds and methods are config choices (:mod:`uservec.training.choices`), named here too so
that evaluation code reads every vocabulary from one place.
"""

from __future__ import annotations

from typing import Literal, get_args

# task kinds and methods are config choices: one definition, in training.choices
from uservec.training.choices import METHODS, TASK_KINDS, Method, TaskKind

__all__ = [
    "CROSS_DOMAIN_BASELINES", "METHODS", "PROFILE_BASELINES", "PROFILE_METRICS", "REGIMES",
    "TASK_KINDS", "CrossDomainBaseline", "Method", "ProfileBaseline", "ProfileMetric", "Regime",
    "TaskKind",
]

#: the simple baselines every method is read against
ProfileBaseline = Literal["majority", "lr", "lr_bal"]
PROFILE_BASELINES: tuple[ProfileBaseline, ...] = get_args(ProfileBaseline)
CrossDomainBaseline = Literal["popularity", "cooc", "ridge"]
CROSS_DOMAIN_BASELINES: tuple[CrossDomainBaseline, ...] = get_args(CrossDomainBaseline)

#: P2 metrics, in report order
ProfileMetric = Literal["accuracy", "macro_f1"]
PROFILE_METRICS: tuple[ProfileMetric, ...] = get_args(ProfileMetric)

#: P2 label regimes: every training-fold label, or a stratified 10% of them
Regime = Literal["full", "low_label"]
REGIMES: tuple[Regime, ...] = get_args(Regime)
