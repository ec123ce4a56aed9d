"""From a PreparedDataset to the tensors P1 pretraining and evaluation read (numpy stays here).

P1 holds out each user's last two events: the last is the test target, the one before it the
validation target, and pretraining sees only the rest. Every training event after a user's first is
a target exactly once: the training part is cut into windows of ``max_len + 1`` events with stride
``max_len``, counted back from the newest event so that recent events get full context and only the
oldest window (where no earlier context exists anyway) is padded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from uservec.contract.ids import PAD_ID
from uservec.contract.sequences import encode_sequence
from uservec.training.data.dataset import PreparedDataset

#: events per user held out by P1 (validation target, test target)
HELD_OUT = 2
#: a user needs one input event before the validation target to be evaluated
MIN_EVAL_LENGTH = HELD_OUT + 1

Split = Literal["valid", "test"]


def training_part(sequence: np.ndarray) -> np.ndarray:
    """The events pretraining may see: all but the last ``HELD_OUT``."""
    return sequence[: max(0, len(sequence) - HELD_OUT)]


def training_event_mask(dataset: PreparedDataset) -> np.ndarray:
    """(E,) bool: True for events in some user's training part (popularity counts these)."""
    lengths = dataset.lengths()
    # position of each event counted back from its user's newest event (0 = newest)
    from_end = np.repeat(dataset.offsets[1:], lengths) - 1 - np.arange(dataset.num_events)
    return from_end >= HELD_OUT


def window_bounds(length: int, max_len: int) -> list[tuple[int, int]]:
    """(start, end) of each window of at most ``max_len + 1`` events, oldest window first."""
    bounds = []
    end = length
    while end >= 2:
        bounds.append((max(0, end - max_len - 1), end))
        end -= max_len
    return bounds[::-1]


def pretrain_examples(dataset: PreparedDataset, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets), (N, max_len) left-padded: target[t] is the event after input[t]."""
    inputs, targets = [], []
    for user in range(dataset.num_users):
        part = training_part(dataset.sequence(user))
        for start, end in window_bounds(len(part), max_len):
            window = part[start:end]
            inputs.append(encode_sequence(window[:-1], max_len))
            targets.append(encode_sequence(window[1:], max_len))
    if not inputs:
        empty = np.zeros((0, max_len), dtype=np.int64)
        return empty, empty.copy()
    return np.stack(inputs), np.stack(targets)


def evaluation_examples(
    dataset: PreparedDataset, split: Split, max_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P1 (users (U,), inputs (U, max_len), targets (U,)) for users with >= 3 events.

    valid: the last ``max_len`` events before the second-to-last event, which is the target;
    test: the last ``max_len`` events before the last event, which is the target.
    """
    if split not in ("valid", "test"):
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
    cut = HELD_OUT if split == "valid" else 1
    users, inputs, targets = [], [], []
    for user in range(dataset.num_users):
        sequence = dataset.sequence(user)
        if len(sequence) < MIN_EVAL_LENGTH:
            continue
        users.append(user)
        inputs.append(encode_sequence(sequence[: len(sequence) - cut], max_len))
        targets.append(sequence[len(sequence) - cut])
    if not users:
        return (np.zeros(0, np.int64), np.zeros((0, max_len), np.int64), np.zeros(0, np.int64))
    return np.asarray(users, np.int64), np.stack(inputs), np.asarray(targets, np.int64)


def window_index(dataset: PreparedDataset, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) (N,) absolute event positions of every window of :func:`window_bounds`.

    Users in order, each user's windows oldest first: the windows of :func:`pretrain_examples`,
    computed without a Python loop over users (millions of users at scale).
    """
    part = np.maximum(dataset.lengths() - HELD_OUT, 0)  # (U,) training events per user
    count = np.where(part >= 2, (part - 2) // max_len + 1, 0)  # (U,) windows per user
    user = np.repeat(np.arange(part.size), count)  # (N,)
    first = np.cumsum(count) - count
    oldest_first = count[user] - 1 - (np.arange(user.size) - first[user])  # j: 0 = newest
    ends = part[user] - oldest_first * max_len
    starts = np.maximum(0, ends - max_len - 1)
    base = dataset.offsets[:-1][user]
    return (base + starts).astype(np.int64), (base + ends).astype(np.int64)


class NextItemWindows(Dataset):
    """Pretraining windows as a torch Dataset; indexing with a tensor of indices gives a batch.

    Lazy: only (start, end) per window is held, and a batch gathers its events from
    ``dataset.items`` when asked, so a memory-mapped dataset (``PreparedDataset.load(mmap=True)``)
    is read a batch at a time. Batches equal :func:`pretrain_examples`' rows.
    """

    def __init__(self, dataset: PreparedDataset, max_len: int) -> None:
        self.items = dataset.items  # (E,), possibly memory-mapped
        self.max_len = max_len
        self.starts, self.ends = window_index(dataset, max_len)  # (N,), (N,)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = np.asarray(index, dtype=np.int64)
        single = rows.ndim == 0
        rows = rows.reshape(-1)
        starts, ends = self.starts[rows, None], self.ends[rows, None]  # (B, 1)
        # column c of the inputs holds event end - 1 - L + c; the targets are one event later
        position = ends - 1 - self.max_len + np.arange(self.max_len)  # (B, L)
        valid = position >= starts
        gathered = np.asarray(self.items[np.clip(position, 0, None)])  # (B, L)
        following = np.asarray(self.items[np.clip(position + 1, 0, None)])  # (B, L)
        inputs = torch.from_numpy(np.where(valid, gathered, PAD_ID).astype(np.int64))
        targets = torch.from_numpy(np.where(valid, following, PAD_ID).astype(np.int64))
        return (inputs[0], targets[0]) if single else (inputs, targets)

    def num_targets(self) -> int:
        return int((self.ends - self.starts - 1).sum())


def shuffled_batches(
    num_examples: int, batch_size: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """Index tensors of one shuffled epoch; the generator alone decides the order (resumable)."""
    order = torch.randperm(num_examples, generator=generator)
    for start in range(0, num_examples, batch_size):
        yield order[start : start + batch_size]


class SetExamples(Dataset):
    """One epoch's order-free examples: (inputs (N, L), targets (N, K)), PAD-padded.

    ``owners`` (N,) says whose events a window holds: -1 for a task dataset user, else the index
    of a corpus user (what the auxiliary heads read labels by).
    """

    def __init__(self, inputs: np.ndarray, targets: np.ndarray, owners: np.ndarray) -> None:
        self.inputs = torch.from_numpy(inputs)
        self.targets = torch.from_numpy(targets)
        self.owners = torch.from_numpy(owners)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[index], self.targets[index]

    def num_targets(self) -> int:
        return int((self.targets != PAD_ID).sum())


class SetWindows:
    """Random-permutation windows with a set-level target (``pretrain.objective = "set"``).

    For data without a time order (or with most events tied) "the next item" is the file's or
    the id tie-break's order. Here each epoch shuffles every user's training events anew; a
    window holds ``max_len`` of them as input and a disjoint held-out subset (``holdout`` of the
    window, at most ``max_targets``) as the target set that every input position predicts. A
    user gets one window per ``max_len`` training events, so long histories count as often as
    under next-item training. The P1 held-out events stay out (:func:`training_part`).
    ``corpus`` adds another population's sequences (every event: P1 never evaluates them);
    ``include_dataset = False`` leaves the task dataset's own users out.
    """

    def __init__(self, dataset: PreparedDataset, max_len: int, holdout: float,
                 max_targets: int, corpus: Sequence[np.ndarray] = (),
                 include_dataset: bool = True) -> None:
        own = [training_part(dataset.sequence(u)) for u in range(dataset.num_users)
               ] if include_dataset else []
        parts = [*((p, -1) for p in own), *((p, i) for i, p in enumerate(corpus))]
        kept = [(p, owner) for p, owner in parts if len(p) >= 2]
        self.parts = [p for p, _ in kept]
        self.owners = np.array([owner for _, owner in kept], dtype=np.int64)
        self.max_len, self.holdout, self.max_targets = max_len, holdout, max_targets

    def __len__(self) -> int:
        return sum(max(1, len(p) // self.max_len) for p in self.parts)

    def draw(self, rng: np.random.Generator) -> SetExamples:
        """This epoch's windows (the same ``rng`` state gives the same windows: resumable)."""
        inputs, targets, owners = [], [], []
        for part, owner in zip(self.parts, self.owners.tolist(), strict=True):
            for _ in range(max(1, len(part) // self.max_len)):
                shuffled = part[rng.permutation(len(part))]
                k = min(self.max_targets, max(1, int(self.holdout * min(len(part),
                                                                        self.max_len))))
                inputs.append(encode_sequence(shuffled[k:k + self.max_len], self.max_len))
                targets.append(encode_sequence(shuffled[:k], self.max_targets))
                owners.append(owner)
        if not inputs:
            empty = np.zeros((0, self.max_len), dtype=np.int64)
            return SetExamples(empty, np.zeros((0, self.max_targets), dtype=np.int64),
                               np.zeros(0, dtype=np.int64))
        return SetExamples(np.stack(inputs), np.stack(targets), np.asarray(owners, np.int64))
