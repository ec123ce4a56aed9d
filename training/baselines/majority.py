"""The P2 floor: the most frequent training label, for everyone."""

from __future__ import annotations

import numpy as np

from uservec.training.evaluation.profile_eval import ProfileFold


def majority_predict(fold: ProfileFold) -> np.ndarray:
    """Most frequent training label (ties: first in class order) for every test user."""
    counts = np.array([(fold.train_labels == c).sum() for c in fold.classes])
    return np.full(fold.test_users.size, fold.classes[int(np.argmax(counts))])
