"""Spread and paired comparisons: what a claim "A beats B" rests on
(docs/protocols.md#common-rules).

P2 reports mean ± sample std over the 5 test folds and compares methods by per-fold differences;
P3 reports mean ± standard error over test users and compares by per-user differences. Overlapping
± ranges are not a comparison: the paired results here are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

Values = Sequence[float] | np.ndarray


def mean_std(values: Values) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value): spread over folds."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("mean of no values")
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return float(array.mean()), std


def mean_se(values: Values) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std / sqrt(n)): spread over test users."""
    array = np.asarray(values, dtype=np.float64)
    mean, std = mean_std(array)
    return mean, std / math.sqrt(array.size)


@dataclass(frozen=True)
class MeanStd:
    """A metric over folds: mean ± sample std."""

    mean: float
    std: float

    @classmethod
    def of(cls, values: Values) -> MeanStd:
        return cls(*mean_std(values))

    def to_json(self) -> dict[str, float]:
        return {"mean": self.mean, "std": self.std}


@dataclass(frozen=True)
class MeanSe:
    """A metric over users: mean ± standard error (NaN for no users)."""

    mean: float
    se: float

    @classmethod
    def of(cls, values: Values) -> MeanSe:
        if not len(values):
            return cls(math.nan, math.nan)
        return cls(*mean_se(values))

    def to_json(self) -> dict[str, float]:
        return {"mean": self.mean, "se": self.se}


def ttest_pvalue(diff: np.ndarray) -> float | None:
    """Two-sided paired t-test p-value of ``diff`` (None when undefined: n < 2 or no spread)."""
    if diff.size < 2 or np.allclose(diff, diff[0]):
        return None
    return float(stats.ttest_1samp(diff, 0.0).pvalue)


@dataclass(frozen=True)
class PairedFolds:
    """Per-fold differences a - b: mean ± sample std, wins, paired t-test p-value."""

    diff_mean: float
    diff_std: float
    per_fold: tuple[float, ...]
    wins: int
    losses: int
    t_pvalue: float | None

    def to_json(self) -> dict[str, Any]:
        return {"diff_mean": self.diff_mean, "diff_std": self.diff_std,
                "per_fold": list(self.per_fold), "wins": self.wins, "losses": self.losses,
                "t_pvalue": self.t_pvalue}


def paired_folds(a: Values, b: Values) -> PairedFolds:
    """Per-fold differences a - b (same folds, same order)."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mean, std = mean_std(diff)
    return PairedFolds(mean, std, tuple(diff.tolist()), int((diff > 0).sum()),
                       int((diff < 0).sum()), ttest_pvalue(diff))


@dataclass(frozen=True)
class PairedUsers:
    """Per-user differences a - b: mean ± s.e., wins/losses/ties, paired t and Wilcoxon p."""

    diff_mean: float
    diff_se: float
    users: int
    wins: int
    losses: int
    ties: int
    t_pvalue: float | None
    wilcoxon_pvalue: float | None

    def to_json(self) -> dict[str, Any]:
        return {"diff_mean": self.diff_mean, "diff_se": self.diff_se, "users": self.users,
                "wins": self.wins, "losses": self.losses, "ties": self.ties,
                "t_pvalue": self.t_pvalue, "wilcoxon_pvalue": self.wilcoxon_pvalue}


def paired_users(a: Values, b: Values) -> PairedUsers:
    """Per-user differences a - b (same users, same order)."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mean, se = mean_se(diff) if diff.size else (math.nan, math.nan)
    wilcoxon = None
    if np.any(diff != 0):
        wilcoxon = float(stats.wilcoxon(diff, zero_method="wilcox").pvalue)
    return PairedUsers(mean, se, int(diff.size), int((diff > 0).sum()), int((diff < 0).sum()),
                       int((diff == 0).sum()), ttest_pvalue(diff), wilcoxon)
