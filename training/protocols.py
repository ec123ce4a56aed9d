"""Evaluation protocols P2 (user-profile prediction) and P3 (cross-domain cold start).

PROTOCOLS.md is the specification; this module is its one implementation. Baselines and neural
methods take their folds, users, candidates and ground truth from here, so every number uservec
reports is computed on the same examples. Seed 0 everywhere.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.model_selection import ShuffleSplit, StratifiedKFold, StratifiedShuffleSplit

from uservec.contract.ids import split_item_key
from uservec.training.data.dataset import SPLIT_TEST, SPLIT_TRAIN, SPLIT_VALID, PreparedDataset

if TYPE_CHECKING:
    from uservec.training.config import ExperimentConfig

logger = logging.getLogger(__name__)

SEED = 0
NUM_FOLDS = 5
LOW_LABEL_FRACTION = 0.1
#: MovieLens-100K age buckets: numpy.digitize(age, AGE_BUCKETS) -> 7 classes
AGE_BUCKETS: tuple[float, ...] = (18, 25, 35, 45, 50, 56)
MIN_SOURCE_EVENTS = 5
VALIDATION_FRACTION = 0.1


class LeakError(RuntimeError):
    """Something a P3 model trains on contains a test user's hidden target events."""


# --------------------------------------------------------------------------------------------
# P2: user-profile prediction
# --------------------------------------------------------------------------------------------


class ProfileLabels(NamedTuple):
    """Labelled users of one attribute (unpacks as ``users, labels, classes``)."""

    #: (N,) dataset user indices with a known label, in id order
    users: np.ndarray
    #: (N,) str labels
    labels: np.ndarray
    #: every class, in a stable order (bucket order for bucketed attributes, else sorted)
    classes: np.ndarray


@dataclass(frozen=True, eq=False)
class Fold:
    """One fold as positions into the labelled-user arrays of :func:`profile_labels`."""

    #: labelled rows a method may fit on
    train: np.ndarray
    #: rows to predict
    test: np.ndarray
    #: every training-fold row (== ``train`` unless low-label): behaviour usable without labels
    pool: np.ndarray


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
    raw = dataset.users[attribute].reset_index(drop=True)
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


def _check_sorted(users: np.ndarray) -> None:
    if users.size and np.any(np.diff(users) <= 0):
        raise ValueError("users must be distinct dataset user indices in id order")


def profile_folds(users: np.ndarray, labels: np.ndarray, low_label: bool = False) -> list[Fold]:
    """The five P2 folds; low-label keeps a stratified 10% of each training fold as labelled."""
    users, labels = np.asarray(users), np.asarray(labels)
    _check_sorted(users)
    outer = StratifiedKFold(NUM_FOLDS, shuffle=True, random_state=SEED)
    folds = []
    for train, test in outer.split(users, labels):
        labelled = train
        if low_label:
            inner = StratifiedShuffleSplit(
                n_splits=1, train_size=LOW_LABEL_FRACTION, random_state=SEED
            )
            keep, _ = next(inner.split(train, labels[train]))
            labelled = np.sort(train[keep])
        folds.append(Fold(train=labelled, test=test, pool=train))
    return folds


def inner_folds(labels: np.ndarray, n_splits: int = 3) -> list[Fold]:
    """Stratified CV folds *inside* a training fold (positions into ``labels``) for tuning."""
    labels = np.asarray(labels)
    splitter = StratifiedKFold(n_splits, shuffle=True, random_state=SEED)
    return [Fold(train=tr, test=te, pool=tr) for tr, te in splitter.split(labels, labels)]


def holdout_split(labels: np.ndarray, fraction: float = VALIDATION_FRACTION) -> Fold:
    """One stratified train/validation split inside a training fold (early stopping, tuning).

    Falls back to an unstratified split when a class has a single example.
    """
    labels = np.asarray(labels)
    _, counts = np.unique(labels, return_counts=True)
    splitter: StratifiedShuffleSplit | ShuffleSplit
    if counts.min() >= 2:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=SEED)
    else:
        splitter = ShuffleSplit(n_splits=1, test_size=fraction, random_state=SEED)
    train, valid = next(splitter.split(labels, labels))
    return Fold(train=np.sort(train), test=np.sort(valid), pool=np.sort(train))


# --------------------------------------------------------------------------------------------
# P3: cross-domain cold-start recommendation
# --------------------------------------------------------------------------------------------


def event_users(dataset: PreparedDataset) -> np.ndarray:
    """(E,) dataset user index of every event."""
    return np.repeat(np.arange(dataset.num_users, dtype=np.int64), dataset.lengths())


def binary_matrix(rows: np.ndarray, columns: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """(R, C) 0/1 matrix with a one at every (rows[e], columns[e]); repeated events count once.

    Every user x item bag of the project (TF-IDF baselines, SVD item init, P3 bags) is built
    here, so "repeated events stay in sequences but a bag is binary" has one implementation.
    """
    matrix = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float64), (rows, columns)), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def _domain_index(dataset: PreparedDataset, domain: str) -> int:
    if domain not in dataset.domains:
        raise KeyError(f"{dataset.name}: no domain {domain!r} (have {list(dataset.domains)})")
    return dataset.domains.index(domain)


def _item_id_order(dataset: PreparedDataset, catalog_items: np.ndarray) -> np.ndarray:
    """``catalog_items`` sorted by raw item id (numerically when every id is an integer)."""
    raw = [split_item_key(str(key))[1] for key in dataset.catalog[catalog_items]]
    if all(r.lstrip("-").isdigit() for r in raw):
        order = np.argsort(np.array([int(r) for r in raw], dtype=np.int64), kind="stable")
    else:
        order = np.argsort(np.array(raw, dtype=str), kind="stable")
    return catalog_items[order]


@dataclass(frozen=True, eq=False)
class CrossDomainSplit:
    """Users, candidates and ground truth of one P3 task (or of its validation round).

    User arguments are dataset user indices; item outputs are positions into ``candidates``
    unless the name says otherwise. ``validation`` is the same structure for hyperparameter
    tuning (its ``test_users`` are the validation users, its ``train_users`` the users fitted
    during tuning), so a tuning run is evaluated exactly like the test.
    """

    dataset: PreparedDataset
    target_domain: str
    #: users whose target events are training data, in id order
    train_users: np.ndarray
    #: evaluable test users (>= 1 ground-truth item among the candidates), in id order
    test_users: np.ndarray
    #: test users with no ground-truth item among the candidates (left out of the averages)
    left_out_users: np.ndarray
    #: (C,) catalog indices of the candidate target items, in item id order
    candidates: np.ndarray
    #: (C,) training users per candidate (the popularity baseline and the ranking tie-break)
    popularity: np.ndarray
    #: (I,) candidate position of every catalog item, -1 for items that are not candidates
    candidate_position: np.ndarray
    #: (E,) events a model may read as a user's input (source domains)
    source_events: np.ndarray
    #: (E,) target events a model may fit on (those of ``train_users``)
    target_train_events: np.ndarray
    #: (E,) hidden target events that hold the test users' ground truth
    ground_truth_events: np.ndarray
    #: tuning round (None inside a validation split)
    validation: CrossDomainSplit | None = None
    #: True when the dataset's published split (CDRIB) was used
    published: bool = False

    @property
    def num_candidates(self) -> int:
        return int(self.candidates.size)

    @property
    def candidate_keys(self) -> np.ndarray:
        """(C,) item keys ``domain::raw_id`` of the candidates."""
        return self.dataset.catalog[self.candidates]

    @property
    def candidate_vocab_ids(self) -> np.ndarray:
        """(C,) vocabulary ids of the candidates (UNK_ID for items below min_count)."""
        return self.dataset.vocab.encode(self.candidate_keys)

    def _user_slice(self, user: int) -> slice:
        offsets = self.dataset.offsets
        return slice(int(offsets[user]), int(offsets[user + 1]))

    def source_sequence(self, user: int) -> np.ndarray:
        """Vocabulary ids of the user's source events, oldest first (the model input)."""
        rows = self._user_slice(user)
        return self.dataset.items[rows][self.source_events[rows]]

    def source_sequences(self, users: np.ndarray) -> list[np.ndarray]:
        return [self.source_sequence(int(user)) for user in users]

    def _candidate_positions(self, user: int, events: np.ndarray) -> np.ndarray:
        rows = self._user_slice(user)
        positions = self.candidate_position[self.dataset.item_index[rows][events[rows]]]
        return np.unique(positions[positions >= 0])

    def target_items(self, user: int) -> np.ndarray:
        """Distinct candidate positions of a *training* user's target items (the fit labels)."""
        return self._candidate_positions(user, self.target_train_events)

    def ground_truth(self, user: int) -> np.ndarray:
        """Distinct candidate positions of a test user's hidden target items."""
        return self._candidate_positions(user, self.ground_truth_events)

    def source_matrix(self, users: np.ndarray) -> sp.csr_matrix:
        """(len(users), I) binary bag of catalog items in the users' source events."""
        return _bag(self.dataset, users, self.source_events, self.dataset.item_index,
                    self.dataset.catalog.size)

    def target_matrix(self, users: np.ndarray) -> sp.csr_matrix:
        """(len(users), C) binary bag of the users' training target items."""
        lookup = self.candidate_position[self.dataset.item_index]
        mask = self.target_train_events & (lookup >= 0)
        return _bag(self.dataset, users, mask, lookup, self.num_candidates)

    def training_view(self) -> np.ndarray:
        """(E,) every event a P3 model may see while training: all inputs + training targets."""
        return self.source_events | self.target_train_events

    def hidden_events(self) -> np.ndarray:
        """(E,) target-domain events of every test user (evaluable or left out)."""
        test = np.concatenate([self.test_users, self.left_out_users])
        target = self.dataset.event_domain == _domain_index(self.dataset, self.target_domain)
        return target & np.isin(event_users(self.dataset), test)

    def check_no_leak(self, event_mask: np.ndarray) -> None:
        """Raise if ``event_mask`` (E,) selects any target event of a test user."""
        leaked = np.flatnonzero(np.asarray(event_mask, dtype=bool) & self.hidden_events())
        if leaked.size:
            users = np.unique(event_users(self.dataset)[leaked])
            raise LeakError(
                f"{leaked.size} hidden {self.target_domain} events of {users.size} test users "
                f"are visible (e.g. user {self.dataset.user_ids[users[0]]})"
            )

    def summary(self) -> dict[str, object]:
        """JSON-ready sizes of the split (for reports)."""
        out: dict[str, object] = {
            "target_domain": self.target_domain,
            "published_split": self.published,
            "train_users": int(self.train_users.size),
            "test_users": int(self.test_users.size),
            "test_users_left_out": int(self.left_out_users.size),
            "candidates": self.num_candidates,
        }
        if self.validation is not None:
            out["validation_users"] = int(self.validation.test_users.size)
            out["validation_users_left_out"] = int(self.validation.left_out_users.size)
        return out


def _bag(
    dataset: PreparedDataset, users: np.ndarray, mask: np.ndarray, columns: np.ndarray,
    num_columns: int,
) -> sp.csr_matrix:
    """Binary (len(users), num_columns) matrix of ``columns[e]`` over the users' masked events."""
    users = np.asarray(users, dtype=np.int64)
    row_of_user = np.full(dataset.num_users, -1, dtype=np.int64)
    row_of_user[users] = np.arange(users.size)
    rows = row_of_user[event_users(dataset)]
    keep = mask & (rows >= 0)
    return binary_matrix(rows[keep], columns[keep], (users.size, num_columns))


def _build_split(
    dataset: PreparedDataset,
    target_domain: str,
    train_users: np.ndarray,
    test_users: np.ndarray,
    source_events: np.ndarray,
    target_events: np.ndarray,
    candidate_events: np.ndarray,
    ground_truth_events: np.ndarray,
    validation: CrossDomainSplit | None = None,
    published: bool = False,
) -> CrossDomainSplit:
    """Candidates and popularity from ``candidate_events``; test users kept if they have truth."""
    users_of = event_users(dataset)
    train_users = np.sort(np.asarray(train_users, dtype=np.int64))
    test_users = np.sort(np.asarray(test_users, dtype=np.int64))
    target_train = target_events & np.isin(users_of, train_users)
    pairs = np.unique(
        np.stack([users_of[candidate_events], dataset.item_index[candidate_events]]), axis=1
    )
    candidates = _item_id_order(dataset, np.unique(pairs[1]))
    counts = np.bincount(pairs[1], minlength=dataset.catalog.size)
    lookup = np.full(dataset.catalog.size, -1, dtype=np.int64)
    lookup[candidates] = np.arange(candidates.size)
    truth = ground_truth_events & (lookup[dataset.item_index] >= 0)
    has_truth = np.zeros(dataset.num_users, dtype=bool)
    has_truth[users_of[truth]] = True
    return CrossDomainSplit(
        dataset=dataset,
        target_domain=target_domain,
        train_users=train_users,
        test_users=test_users[has_truth[test_users]],
        left_out_users=test_users[~has_truth[test_users]],
        candidates=candidates,
        popularity=counts[candidates].astype(np.int64),
        candidate_position=lookup,
        source_events=source_events,
        target_train_events=target_train,
        ground_truth_events=ground_truth_events & np.isin(users_of, test_users),
        validation=validation,
        published=published,
    )


def split_users(eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P3 user split of id-ordered ``eligible`` users: (train, validation, test), each sorted."""
    perm = np.random.default_rng(SEED).permutation(np.asarray(eligible))
    chunks = np.array_split(perm, NUM_FOLDS)
    test = np.sort(chunks[0])
    train = np.sort(np.concatenate(chunks[1:]))
    num_valid = round(VALIDATION_FRACTION * train.size)  # Python round: half to even
    valid = np.sort(np.random.default_rng(SEED).permutation(train)[:num_valid])
    return train, valid, test


def cross_domain_split(dataset: PreparedDataset, target_domain: str) -> CrossDomainSplit:
    """The P3 split for ``target_domain`` (the published split when the dataset has one)."""
    if dataset.event_split is not None and np.any(dataset.event_split >= 0):
        return _published_split(dataset, target_domain)
    target = dataset.event_domain == _domain_index(dataset, target_domain)
    users_of = event_users(dataset)
    target_count = np.bincount(users_of[target], minlength=dataset.num_users)
    source_count = np.bincount(users_of[~target], minlength=dataset.num_users)
    eligible = np.flatnonzero((source_count >= MIN_SOURCE_EVENTS) & (target_count >= 1))
    if eligible.size < NUM_FOLDS:
        raise ValueError(
            f"{dataset.name}: only {eligible.size} users have >= {MIN_SOURCE_EVENTS} source and "
            f">= 1 {target_domain} events"
        )
    train, valid, test = split_users(eligible)
    fit = np.setdiff1d(train, valid)
    source = ~target
    validation = _build_split(
        dataset, target_domain, fit, valid, source, target,
        candidate_events=target & np.isin(users_of, fit), ground_truth_events=target,
    )
    split = _build_split(
        dataset, target_domain, train, test, source, target,
        candidate_events=target & np.isin(users_of, train), ground_truth_events=target,
        validation=validation,
    )
    logger.info("P3 %s -> %s: %s", dataset.name, target_domain, split.summary())
    return split


def _published_split(dataset: PreparedDataset, target_domain: str) -> CrossDomainSplit:
    """CDRIB: train events of both domains for training, valid/test target events as truth.

    Training users are the users with both source and target training events (the ones a
    source -> target mapping can learn from); candidates and popularity come from every target
    training event, as in the published benchmark. No >= 5 source-events filter.
    """
    if dataset.event_split is None:
        raise ValueError(f"{dataset.name}: no published split")
    target = dataset.event_domain == _domain_index(dataset, target_domain)
    users_of = event_users(dataset)
    is_train = dataset.event_split == SPLIT_TRAIN
    source = ~target & is_train
    target_train = target & is_train
    has_source = np.bincount(users_of[source], minlength=dataset.num_users) > 0
    has_target = np.bincount(users_of[target_train], minlength=dataset.num_users) > 0
    train = np.flatnonzero(has_source & has_target)
    valid_truth = target & (dataset.event_split == SPLIT_VALID)
    test_truth = target & (dataset.event_split == SPLIT_TEST)
    valid, test = np.unique(users_of[valid_truth]), np.unique(users_of[test_truth])
    overlap = np.intersect1d(np.concatenate([valid, test]), train)
    if overlap.size:
        raise ValueError(
            f"{dataset.name}: {overlap.size} validation/test users also have {target_domain} "
            "training events; the published split is not cold-start"
        )
    validation = _build_split(
        dataset, target_domain, train, valid, source, target_train,
        candidate_events=target_train, ground_truth_events=valid_truth, published=True,
    )
    split = _build_split(
        dataset, target_domain, train, test, source, target_train,
        candidate_events=target_train, ground_truth_events=test_truth,
        validation=validation, published=True,
    )
    logger.info("P3 %s -> %s (published split): %s", dataset.name, target_domain, split.summary())
    return split


def pretraining_mask(dataset: PreparedDataset, targets: Sequence[str]) -> np.ndarray:
    """(E,) events one shared backbone may pretrain on: all but every target's hidden events.

    Hidden = the target-domain events of each target's test users; with a published split also
    the validation users' target events (they are not training users there, and tuning on users
    whose answers pretraining saw would flatter the chosen hyperparameters). With a split of our
    own the validation users are drawn from the training users, whose target events are
    training data (the refit reads them), so pretraining keeps them: P3 allows it, and it can
    only bias which hyperparameters validation picks, never what the test users are scored on.
    """
    mask = np.ones(dataset.num_events, dtype=bool)
    for target in targets:
        split = cross_domain_split(dataset, target)
        mask &= ~split.hidden_events()
        if split.published and split.validation is not None:
            mask &= ~split.validation.hidden_events()
    return mask


def pretraining_view(cfg: ExperimentConfig, dataset: PreparedDataset) -> PreparedDataset:
    """Events the one shared backbone may see: all but each P3 target's held-out events.

    PROTOCOLS.md P3 allows one backbone for every task when it never sees the target-domain
    events of any declared target's test users; P1 then evaluates on the same view. The view's
    fingerprint differs from the dataset's whenever events are hidden, so an encoder records
    which view it was pretrained on.
    """
    targets = [t.target_domain for t in cfg.tasks if t.kind == "cross_domain" and t.target_domain]
    if not targets:
        return dataset
    keep = pretraining_mask(dataset, targets)
    logger.info("pretraining view hides %d held-out target events of %s", int((~keep).sum()),
                targets)
    return dataset.restrict_events(keep, f"P3 test users' events in {', '.join(targets)}")

