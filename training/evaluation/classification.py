"""P2 metrics: accuracy and macro-F1 over every class, in plain numpy
(docs/protocols.md#p2-user-profile-prediction).

Baselines, methods, probes and the export's int8 check all score through these two functions, so
a difference between two methods can never come from two implementations of one metric.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score

#: labels or predictions: anything ``numpy.asarray`` turns into a 1-d array
Labels = Sequence[object] | np.ndarray


def accuracy(y_true: Labels, y_pred: Labels) -> float:
    """Fraction of exact label matches."""
    truth, predicted = np.asarray(y_true), np.asarray(y_pred)
    if truth.shape != predicted.shape:
        raise ValueError(f"shape mismatch: {truth.shape} vs {predicted.shape}")
    if truth.size == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float(np.mean(truth == predicted))


def macro_f1(y_true: Labels, y_pred: Labels, classes: Labels) -> float:
    """Macro-F1 over *all* classes: a class the model never predicts counts as F1 = 0."""
    return float(
        f1_score(
            np.asarray(y_true), np.asarray(y_pred), average="macro",
            labels=np.asarray(classes), zero_division=0,
        )
    )
