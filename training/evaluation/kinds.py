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
    "CROSS_DOMAIN_BASELINES", "DEFAULT_LABEL_FRACTIONS", "FULL_REGIME", "METHODS",
    "PROFILE_BASELINES", "PROFILE_METRICS", "TASK_KINDS", "CrossDomainBaseline", "Method",
    "ProfileBaseline", "ProfileMetric", "Regime", "TaskKind", "regime_fraction", "regime_key",
    "regime_label",
]

#: the simple baselines every method is read against
#: (the pooled and corpus-SVD ones only where a corpus lends its users: pretrain.corpus)
ProfileBaseline = Literal["majority", "lr", "lr_bal", "lr_pooled", "lr_bal_pooled", "svd_lr",
                          "svd_lr_bal"]
PROFILE_BASELINES: tuple[ProfileBaseline, ...] = get_args(ProfileBaseline)
CrossDomainBaseline = Literal["popularity", "cooc", "ridge"]
CROSS_DOMAIN_BASELINES: tuple[CrossDomainBaseline, ...] = get_args(CrossDomainBaseline)

#: P2 metrics, in report order
ProfileMetric = Literal["accuracy", "macro_f1"]
PROFILE_METRICS: tuple[ProfileMetric, ...] = get_args(ProfileMetric)

#: a P2 label regime: the labelled share of each training fold, written as ``repr(float)``
#: ("0.01", "0.1", "1.0"), which is how report.json keys it
Regime = str
#: the label-efficiency curve every profile task reports by default (``eval.label_fractions``)
DEFAULT_LABEL_FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 1.0)
#: every training-fold row labelled
FULL_REGIME: Regime = "1.0"


def regime_key(fraction: float) -> Regime:
    """``0.1`` -> ``"0.1"``, ``1`` -> ``"1.0"``: the regime's key in reports."""
    return repr(float(fraction))


def regime_fraction(regime: Regime) -> float:
    """The labelled share a regime key stands for (``"0.1"`` -> 0.1)."""
    return float(regime)


def regime_label(regime: Regime) -> str:
    """``"0.1"`` -> ``"10% of the labels"`` (report headings)."""
    return f"{regime_fraction(regime):.0%} of the labels"
