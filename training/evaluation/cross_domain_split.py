"""P3 split: who is trained, tuned and tested on, and what a model may read
(docs/protocols.md#p3-cross-domain-cold-start).

Two layers, so the split is computed once and every stage reads the same one:

* :class:`CrossDomainUsers` is the split itself: the user partition of one target domain (ours:
  the seed-0 permutation of eligible users; or the published CDRIB split). A pure function of the
  data (:func:`cross_domain_users`), small and serialisable (``to_payload``/``from_payload``).
* :class:`CrossDomainSplit` is its view over a dataset (:func:`cross_domain_view`): candidates,
  popularity, ground truth and the event masks a model may read, derived from the partition.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from uservec.contract.ids import split_item_key
from uservec.training.data.dataset import SPLIT_TEST, SPLIT_TRAIN, SPLIT_VALID, PreparedDataset
from uservec.training.evaluation.bags import binary_matrix, event_users
from uservec.training.evaluation.errors import InfeasibleEvaluation, LeakError

logger = logging.getLogger(__name__)

SEED = 0
NUM_FOLDS = 5
MIN_SOURCE_EVENTS = 5
VALIDATION_FRACTION = 0.1


@dataclass(frozen=True, eq=False)
class CrossDomainUsers:
    """The P3 user partition of one target domain (dataset user indices, each sorted)."""

    target_domain: str
    #: True when the dataset's published split (CDRIB) was used
    published: bool
    #: users whose target events are training data
    train: np.ndarray
    #: users fitted during tuning (ours: ``train`` minus ``validation``; published: ``train``)
    validation_fit: np.ndarray
    #: users tuned on, treated like test users
    validation: np.ndarray
    #: every test user (those without ground truth among the candidates are left out later)
    test: np.ndarray

    def to_payload(self) -> dict[str, Any]:
        """JSON-ready partition (what a run folder stores)."""
        return {"target_domain": self.target_domain, "published": self.published,
                **{key: getattr(self, key).tolist() for key in _USER_SETS}}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> CrossDomainUsers:
        users = {key: np.asarray(payload[key], dtype=np.int64) for key in _USER_SETS}
        return cls(target_domain=str(payload["target_domain"]),
                   published=bool(payload["published"]), **users)


_USER_SETS = ("train", "validation_fit", "validation", "test")


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
        return hidden_target_events(self.dataset, self.target_domain, test)

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


def domain_index(dataset: PreparedDataset, domain: str) -> int:
    """Position of ``domain`` in ``dataset.domains``; an unknown domain cannot be evaluated."""
    if domain not in dataset.domains:
        raise InfeasibleEvaluation(
            f"{dataset.name}: no domain {domain!r} (have {list(dataset.domains)})")
    return dataset.domains.index(domain)


def hidden_target_events(dataset: PreparedDataset, domain: str, users: np.ndarray) -> np.ndarray:
    """(E,) the ``domain`` events of ``users``: what a cold-start model must never see."""
    target = dataset.event_domain == domain_index(dataset, domain)
    return target & np.isin(event_users(dataset), users)


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


def _item_id_order(dataset: PreparedDataset, catalog_items: np.ndarray) -> np.ndarray:
    """``catalog_items`` sorted by raw item id (numerically when every id is an integer)."""
    raw = [split_item_key(str(key))[1] for key in dataset.catalog[catalog_items]]
    if all(r.lstrip("-").isdigit() for r in raw):
        order = np.argsort(np.array([int(r) for r in raw], dtype=np.int64), kind="stable")
    else:
        order = np.argsort(np.array(raw, dtype=str), kind="stable")
    return catalog_items[order]


# --------------------------------------------------------------------------------------------
# The partition: a pure function of the data
# --------------------------------------------------------------------------------------------


def split_users(eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P3 user split of id-ordered ``eligible`` users: (train, validation, test), each sorted."""
    perm = np.random.default_rng(SEED).permutation(np.asarray(eligible))
    chunks = np.array_split(perm, NUM_FOLDS)
    test = np.sort(chunks[0])
    train = np.sort(np.concatenate(chunks[1:]))
    num_valid = round(VALIDATION_FRACTION * train.size)  # Python round: half to even
    valid = np.sort(np.random.default_rng(SEED).permutation(train)[:num_valid])
    return train, valid, test


def eligible_users(dataset: PreparedDataset, target_domain: str) -> np.ndarray:
    """Users with >= 5 source events and >= 1 event in the target domain, in id order."""
    target = dataset.event_domain == domain_index(dataset, target_domain)
    users_of = event_users(dataset)
    target_count = np.bincount(users_of[target], minlength=dataset.num_users)
    source_count = np.bincount(users_of[~target], minlength=dataset.num_users)
    return np.flatnonzero((source_count >= MIN_SOURCE_EVENTS) & (target_count >= 1))


def has_published_split(dataset: PreparedDataset) -> bool:
    return dataset.event_split is not None and bool(np.any(dataset.event_split >= 0))


def cross_domain_users(dataset: PreparedDataset, target_domain: str) -> CrossDomainUsers:
    """The P3 partition for ``target_domain`` (the published split when the dataset has one)."""
    if has_published_split(dataset):
        return _published_users(dataset, target_domain)
    eligible = eligible_users(dataset, target_domain)
    if eligible.size < NUM_FOLDS:
        raise InfeasibleEvaluation(
            f"{dataset.name}: only {eligible.size} users have >= {MIN_SOURCE_EVENTS} source and "
            f">= 1 {target_domain} events"
        )
    train, valid, test = split_users(eligible)
    return CrossDomainUsers(target_domain, False, train, np.setdiff1d(train, valid), valid, test)


def _published_users(dataset: PreparedDataset, target_domain: str) -> CrossDomainUsers:
    """CDRIB: training users have source and target training events; valid/test users are those
    with valid/test target events. No >= 5 source-events filter."""
    assert dataset.event_split is not None
    target = dataset.event_domain == domain_index(dataset, target_domain)
    users_of = event_users(dataset)
    is_train = dataset.event_split == SPLIT_TRAIN
    has_source = np.bincount(users_of[~target & is_train], minlength=dataset.num_users) > 0
    has_target = np.bincount(users_of[target & is_train], minlength=dataset.num_users) > 0
    train = np.flatnonzero(has_source & has_target)
    valid = np.unique(users_of[target & (dataset.event_split == SPLIT_VALID)])
    test = np.unique(users_of[target & (dataset.event_split == SPLIT_TEST)])
    overlap = np.intersect1d(np.concatenate([valid, test]), train)
    if overlap.size:
        raise ValueError(
            f"{dataset.name}: {overlap.size} validation/test users also have {target_domain} "
            "training events; the published split is not cold-start"
        )
    return CrossDomainUsers(target_domain, True, train, train, valid, test)


# --------------------------------------------------------------------------------------------
# The view: candidates, truth and event masks derived from a partition
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Events:
    """The event masks a partition's view is built from."""

    #: inputs a model may read
    source: np.ndarray
    #: target events that may be training data (of training users only, after the view)
    target: np.ndarray
    #: ground-truth events of the validation and test rounds
    valid_truth: np.ndarray
    test_truth: np.ndarray
    #: published: every target training event makes the candidates, whoever's it is
    candidates_from_all: bool


def _events(dataset: PreparedDataset, users: CrossDomainUsers) -> _Events:
    target = dataset.event_domain == domain_index(dataset, users.target_domain)
    if not users.published:
        return _Events(~target, target, target, target, candidates_from_all=False)
    assert dataset.event_split is not None
    is_train = dataset.event_split == SPLIT_TRAIN
    return _Events(~target & is_train, target & is_train,
                   target & (dataset.event_split == SPLIT_VALID),
                   target & (dataset.event_split == SPLIT_TEST), candidates_from_all=True)


def _build_split(
    dataset: PreparedDataset,
    users: CrossDomainUsers,
    events: _Events,
    train_users: np.ndarray,
    test_users: np.ndarray,
    ground_truth_events: np.ndarray,
    validation: CrossDomainSplit | None = None,
) -> CrossDomainSplit:
    """Candidates and popularity from the target events a model may fit on; test users kept if
    they have truth among the candidates."""
    users_of = event_users(dataset)
    train_users = np.sort(np.asarray(train_users, dtype=np.int64))
    test_users = np.sort(np.asarray(test_users, dtype=np.int64))
    target_train = events.target & np.isin(users_of, train_users)
    candidate_events = events.target if events.candidates_from_all else target_train
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
        target_domain=users.target_domain,
        train_users=train_users,
        test_users=test_users[has_truth[test_users]],
        left_out_users=test_users[~has_truth[test_users]],
        candidates=candidates,
        popularity=counts[candidates].astype(np.int64),
        candidate_position=lookup,
        source_events=events.source,
        target_train_events=target_train,
        ground_truth_events=ground_truth_events & np.isin(users_of, test_users),
        validation=validation,
        published=users.published,
    )


def cross_domain_view(dataset: PreparedDataset, users: CrossDomainUsers) -> CrossDomainSplit:
    """The :class:`CrossDomainSplit` of a partition (its validation round included)."""
    events = _events(dataset, users)
    validation = _build_split(dataset, users, events, users.validation_fit, users.validation,
                              events.valid_truth)
    split = _build_split(dataset, users, events, users.train, users.test, events.test_truth,
                         validation=validation)
    logger.info("P3 %s -> %s%s: %s", dataset.name, users.target_domain,
                " (published split)" if users.published else "", split.summary())
    return split


def cross_domain_split(dataset: PreparedDataset, target_domain: str) -> CrossDomainSplit:
    """The P3 split for ``target_domain``: :func:`cross_domain_users`, then its view."""
    return cross_domain_view(dataset, cross_domain_users(dataset, target_domain))
