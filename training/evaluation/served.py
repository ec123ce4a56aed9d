"""The served head of a task and how it compares with the strongest baseline.

Every task can be served as ``wide`` (a linear model on the item bag), ``deep`` (the network
head on the user vector) or ``wide+deep`` (their logits or scores added). Which one is chosen on
validation users inside the training data only (:func:`choose_kind`); the report then carries,
per label regime, a ``served`` block that a program can read (:class:`ServedBlock`)::

    {"kind": "wide+deep", "metrics": {"accuracy": 0.77, ...},
     "vs_strongest_baseline": {"accuracy": {"baseline": "lr", "value": 0.76,
                                            "paired_diff": 0.01, "ratio": 1.013}}}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

ServedKind = Literal["wide", "deep", "wide+deep"]
SERVED_KINDS: tuple[ServedKind, ...] = get_args(ServedKind)
#: validation ties go to the simpler kind: the bag alone, then the bag plus the network
TIE_ORDER: tuple[ServedKind, ...] = ("wide", "wide+deep", "deep")


def choose_kind(validation: Mapping[ServedKind, float], margin: float = 0.0) -> ServedKind:
    """The kind with the highest validation score; a network kind must beat ``wide`` by ``margin``.

    ``validation`` holds scores measured on validation users only; test users never enter. A
    network's score is the best over its epochs and grid points *on these same users* (early
    stopping), the wide part's is one fit tuned without them: the network's is biased upward.
    :func:`one_standard_error` is the margin the callers use (the one-standard-error rule:
    prefer the simpler model unless the other is better by more than the noise). Ties:
    :data:`TIE_ORDER`.
    """
    kinds = [kind for kind in TIE_ORDER if kind in validation]
    if not kinds:
        raise ValueError("no served kind has a validation score")

    def adjusted(kind: ServedKind) -> tuple[float, int]:
        penalty = 0.0 if kind == "wide" else margin
        return validation[kind] - penalty, -TIE_ORDER.index(kind)

    return max(kinds, key=adjusted)


def one_standard_error(values: Sequence[float] | np.ndarray) -> float:
    """Standard error of a mean of per-user values (0 for fewer than two)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return 0.0
    return float(values.std(ddof=1) / np.sqrt(values.size))


def proportion_standard_error(score: float, n: int) -> float:
    """Standard error of a proportion-like score (accuracy, macro-F1) measured on ``n`` users."""
    score = min(max(score, 0.0), 1.0)
    return float(np.sqrt(max(score * (1 - score), 0.25 / max(n, 1)) / max(n, 1)))


def most_common_kind(kinds: Sequence[ServedKind]) -> ServedKind:
    """The kind chosen most often (ties: :data:`TIE_ORDER`): one regime's summary of folds."""
    counts = Counter(kinds)
    return max(TIE_ORDER, key=lambda kind: (counts[kind], -TIE_ORDER.index(kind)))


@dataclass(frozen=True)
class Versus:
    """The served head against the strongest baseline of one metric."""

    baseline: str
    #: the baseline's mean
    value: float
    #: mean of the paired (per-fold or per-user) differences served - baseline
    paired_diff: float
    #: served mean / baseline mean (None when the baseline scores 0)
    ratio: float | None

    def to_json(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "value": self.value, "paired_diff": self.paired_diff,
                "ratio": self.ratio}


@dataclass(frozen=True)
class ServedBlock:
    """One regime's served head: its kind, its metrics and the comparison per metric."""

    kind: ServedKind
    metrics: dict[str, float]
    vs_strongest_baseline: dict[str, Versus]
    #: the kind chosen in each fold (P2; each on that fold's validation users)
    per_fold_kinds: tuple[ServedKind, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind, "metrics": dict(self.metrics),
            "vs_strongest_baseline": {m: v.to_json() for m, v in
                                      self.vs_strongest_baseline.items()}}
        if self.per_fold_kinds is not None:
            out["per_fold_kinds"] = list(self.per_fold_kinds)
        return out


def served_block(kind: ServedKind, served: Mapping[str, Sequence[float]],
                 baselines: Mapping[str, Mapping[str, Sequence[float]]],
                 strongest: Mapping[Any, str],
                 per_fold_kinds: Sequence[ServedKind] | None = None) -> ServedBlock:
    """The block of one regime from paired values (per fold, or per user).

    ``served[metric]`` and ``baselines[name][metric]`` are paired value lists (same folds or
    users, same order); ``strongest[metric]`` names the baseline to compare with.
    """
    metrics = {m: float(np.mean(values)) for m, values in served.items()}
    versus = {}
    for metric, name in strongest.items():
        base = np.asarray(baselines[name][metric], dtype=np.float64)
        mine = np.asarray(served[metric], dtype=np.float64)
        value = float(base.mean())
        versus[metric] = Versus(name, value, float((mine - base).mean()),
                                None if value == 0 else float(mine.mean() / value))
    return ServedBlock(kind, metrics, versus,
                       None if per_fold_kinds is None else tuple(per_fold_kinds))
