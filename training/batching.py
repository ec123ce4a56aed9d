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
    mask = np.ones(dataset.num_events, dtype=bool)
    ends = dataset.offsets[1:]
    starts = dataset.offsets[:-1]
    for start, end in zip(starts, ends, strict=True):
        mask[max(start, end - HELD_OUT) : end] = False
    return mask


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


class NextItemWindows(Dataset):
    """Pretraining windows as a torch Dataset; indexing with a tensor of indices gives a batch."""

    def __init__(self, dataset: PreparedDataset, max_len: int) -> None:
        inputs, targets = pretrain_examples(dataset, max_len)
        self.inputs = torch.from_numpy(inputs)  # (N, L)
        self.targets = torch.from_numpy(targets)  # (N, L)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[index], self.targets[index]

    def num_targets(self) -> int:
        return int((self.targets != PAD_ID).sum())


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
