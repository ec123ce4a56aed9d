"""P2 splits: labelled users, the five folds, the low-label rows, inner folds and the validation
holdout (docs/protocols.md#p2-user-profile-prediction). Pure functions of the labels; seed 0
everywhere.

Every P2 number (baselines, methods, probes, export metrics) is computed on the folds made here,
so "the same folds" is a property of the code, not a convention. Positions in a :class:`Fold`
index the labelled-user arrays of :func:`profile_labels` (or, for :func:`inner_folds` and
:func:`holdout_split`, the rows they were given).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sklearn.model_selection import ShuffleSplit, StratifiedKFold, StratifiedShuffleSplit

from uservec.training.data.dataset import PreparedDataset

SEED = 0
NUM_FOLDS = 5
LOW_LABEL_FRACTION = 0.1
INNER_FOLDS = 3
VALIDATION_FRACTION = 0.1
#: MovieLens-100K age buckets: numpy.digitize(age, AGE_BUCKETS) -> 7 classes
AGE_BUCKETS: tuple[float, ...] = (18, 25, 35, 45, 50, 56)


class ProfileLabels(NamedTuple):
    """Labelled users of one attribute (unpacks as ``users, labels, classes``)."""

    #: (N,) dataset user indices with a known label, in id order
    users: np.ndarray
    #: (N,) str labels
    labels: np.ndarray
    #: every class, in a stable order (bucket order for bucketed attributes, else sorted)
    classes: np.ndarray

    def codes(self) -> np.ndarray:
        """(N,) position of each label in ``classes`` (a task head's output order)."""
        return class_codes(self.labels, self.classes)

    def counts(self) -> dict[str, int]:
        """Labelled users per class, in class order (for reports and messages)."""
        return class_counts(self.labels, self.classes)


@dataclass(frozen=True, eq=False)
class Fold:
    """One fold as positions into the labelled-user arrays of :func:`profile_labels`."""

    #: labelled rows a method may fit on
    train: np.ndarray
    #: rows to predict
    test: np.ndarray
    #: every training-fold row (== ``train`` unless low-label): behaviour usable without labels
    pool: np.ndarray

    def to_payload(self) -> dict[str, list[int]]:
        """JSON-ready positions (what a run folder stores)."""
        return {"train": self.train.tolist(), "test": self.test.tolist(),
                "pool": self.pool.tolist()}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Fold:
        return cls(**{key: np.asarray(payload[key], dtype=np.int64)
                      for key in ("train", "test", "pool")})


def class_codes(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(N,) position of each of ``labels`` in ``classes``."""
    position = {str(name): pos for pos, name in enumerate(classes)}
    return np.array([position[str(label)] for label in labels], dtype=np.int64)


def class_counts(labels: np.ndarray, classes: np.ndarray) -> dict[str, int]:
    """How many of ``labels`` fall in each of ``classes`` (0 included), in class order."""
    names, counts = np.unique(np.asarray(labels).astype(str), return_counts=True)
    found = dict(zip(names.tolist(), counts.tolist(), strict=True))
    return {str(c): int(found.get(str(c), 0)) for c in classes}


def bucket_names(edges: Sequence[float]) -> list[str]:
    """Readable names of the ``len(edges) + 1`` buckets of ``numpy.digitize(x, edges)``."""

    def fmt(value: float) -> str:
        return str(int(value)) if float(value).is_integer() else f"{value:g}"

    integral = all(float(edge).is_integer() for edge in edges)
    names = [f"<{fmt(edges[0])}"]
    for low, high in itertools.pairwise(edges):
        names.append(f"{fmt(low)}-{fmt(high - 1)}" if integral else f"[{fmt(low)},{fmt(high)})")
    names.append(f"{fmt(edges[-1])}+")
    return names


def profile_labels(
    dataset: PreparedDataset, attribute: str, buckets: Sequence[float] | None = None
) -> ProfileLabels:
    """Users with a known ``attribute`` and their labels (bucketed with ``numpy.digitize``)."""
    if dataset.users is None or attribute not in dataset.users.columns:
        have = [] if dataset.users is None else list(dataset.users.columns)
        raise KeyError(f"{dataset.name}: no user attribute {attribute!r} (have {have})")
    return column_labels(dataset.users[attribute], buckets)


def column_labels(column: pd.Series, buckets: Sequence[float] | None = None) -> ProfileLabels:
    """Rows of ``column`` with a known value and their labels (a users file's attribute).

    Two populations bucketed with the same edges (MovieLens-100K ages, MovieLens-1M age codes)
    get the same class names.
    """
    raw = column.reset_index(drop=True)
    if buckets is not None:
        edges = list(buckets)
        if sorted(edges) != edges:
            raise ValueError(f"bucket edges must be increasing, got {edges}")
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        users = np.flatnonzero(~np.isnan(values))
        names = np.array(bucket_names(edges))
        codes = np.digitize(values[users], edges)
        labels = names[codes]
        classes = names[np.unique(codes)]
    else:
        text = raw.astype("string").str.strip()
        users = np.flatnonzero((~text.isna() & (text != "")).to_numpy())
        labels = text.iloc[users].to_numpy(dtype=str)
        classes = np.unique(labels)
    return ProfileLabels(users.astype(np.int64), labels.astype(str), classes.astype(str))


def check_id_order(users: np.ndarray) -> None:
    """The folds are defined over users sorted by id; anything else is a different split."""
    if users.size and np.any(np.diff(users) <= 0):
        raise ValueError("users must be distinct dataset user indices in id order")


def outer_folds(users: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training rows, test rows) of ``StratifiedKFold(5, shuffle=True, random_state=0)``."""
    users, labels = np.asarray(users), np.asarray(labels)
    check_id_order(users)
    outer = StratifiedKFold(NUM_FOLDS, shuffle=True, random_state=SEED)
    return list(outer.split(users, labels))


def labelled_rows(train: np.ndarray, labels: np.ndarray, fraction: float) -> np.ndarray:
    """The labelled rows of a label regime: a stratified ``fraction`` of ``train`` (sorted).

    ``labels`` are the labels of every row ``train`` indexes; ``fraction`` 1.0 keeps every row.
    Raises ValueError when the share would hold fewer rows than the fold has classes, or misses
    a class (docs/protocols.md#p2-label-efficiency-regimes: such a regime is skipped).
    """
    if fraction >= 1.0:
        return np.sort(train)
    present = np.unique(labels[train])
    size = int(np.floor(fraction * train.size))
    if size < present.size:
        raise ValueError(f"{fraction:g} of {train.size} rows is {size} rows, fewer than the "
                         f"{present.size} classes")
    inner = StratifiedShuffleSplit(n_splits=1, train_size=fraction, random_state=SEED)
    keep, _ = next(inner.split(train, labels[train]))
    missing = np.setdiff1d(present, labels[train[keep]])
    if missing.size:
        raise ValueError(f"the {keep.size} labelled rows hold no row of class "
                         f"{', '.join(map(str, missing))}")
    return np.sort(train[keep])


def low_label_rows(train: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The labelled rows of the 10% regime (:func:`labelled_rows` at ``LOW_LABEL_FRACTION``)."""
    return labelled_rows(train, labels, LOW_LABEL_FRACTION)


def profile_folds(users: np.ndarray, labels: np.ndarray, low_label: bool = False) -> list[Fold]:
    """The five P2 folds; low-label keeps a stratified 10% of each training fold as labelled."""
    labels = np.asarray(labels)
    folds = []
    for train, test in outer_folds(users, labels):
        labelled = low_label_rows(train, labels) if low_label else train
        folds.append(Fold(train=labelled, test=test, pool=train))
    return folds


def inner_folds(labels: np.ndarray, n_splits: int = INNER_FOLDS) -> list[Fold]:
    """Stratified CV folds *inside* a training fold (positions into ``labels``) for tuning."""
    labels = np.asarray(labels)
    splitter = StratifiedKFold(n_splits, shuffle=True, random_state=SEED)
    return [Fold(train=tr, test=te, pool=tr) for tr, te in splitter.split(labels, labels)]


def holdout_split(labels: np.ndarray, fraction: float = VALIDATION_FRACTION,
                  small: bool = False) -> Fold:
    """One stratified train/validation split inside a training fold (early stopping, tuning).

    Falls back to an unstratified split when a class has a single example. With ``small`` (the
    label regimes below 1.0) it falls back too when either part would hold fewer rows than there
    are classes: 5% of a fold of 750 users is 37 rows, whose 15% holdout cannot hold one user
    of each of 7 age classes; otherwise sklearn refuses and the task says how to fix it.
    """
    labels = np.asarray(labels)
    _, counts = np.unique(labels, return_counts=True)
    n_valid = int(np.ceil(fraction * labels.size))
    stratifiable = min(n_valid, labels.size - n_valid) >= counts.size
    splitter: StratifiedShuffleSplit | ShuffleSplit
    if counts.min() >= 2 and (stratifiable or not small):
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=SEED)
    else:
        splitter = ShuffleSplit(n_splits=1, test_size=fraction, random_state=SEED)
    train, valid = next(splitter.split(labels, labels))
    return Fold(train=np.sort(train), test=np.sort(valid), pool=np.sort(train))
