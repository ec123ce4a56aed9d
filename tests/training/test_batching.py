from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from uservec.contract.ids import PAD_ID
from uservec.training.batching import (
    NextItemWindows,
    evaluation_examples,
    pretrain_examples,
    shuffled_batches,
    training_event_mask,
    window_bounds,
)


@given(length=st.integers(0, 60), max_len=st.integers(1, 12))
def test_windows_make_every_event_after_the_first_a_target_exactly_once(
    length: int, max_len: int
) -> None:
    bounds = window_bounds(length, max_len)
    targets = [t for start, end in bounds for t in range(start + 1, end)]
    assert targets == list(range(1, length))
    assert all(2 <= end - start <= max_len + 1 for start, end in bounds)
    if bounds:
        assert bounds[-1][1] == length  # the newest window ends at the newest event


def test_pretraining_never_sees_the_last_two_events(dataset_from_sequences) -> None:
    # items 40.. only ever appear as a user's last two events
    sequences = [[2, 3, 4, 5, 6, 7, 40, 41], [8, 9, 10, 42, 43], [11, 12, 44]]
    dataset = dataset_from_sequences(sequences, vocab_size=64)
    inputs, targets = pretrain_examples(dataset, max_len=3)
    seen = set(inputs.ravel()) | set(targets.ravel())
    assert seen.isdisjoint({40, 41, 42, 43, 44})
    # user 0's training part [2..7] with max_len 3: windows [2,3,4] then [4,5,6,7]
    np.testing.assert_array_equal(inputs[:2], [[PAD_ID, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(targets[:2], [[PAD_ID, 3, 4], [5, 6, 7]])
    # every real target is the event that follows its input position
    for row_in, row_out in zip(inputs, targets, strict=True):
        real = row_out != PAD_ID
        np.testing.assert_array_equal(row_in[real][1:], row_out[real][:-1])
    np.testing.assert_array_equal(
        training_event_mask(dataset),
        [True] * 6 + [False] * 2 + [True] * 3 + [False] * 2 + [True] + [False] * 2,
    )


def test_evaluation_inputs_stop_before_their_target(dataset_from_sequences) -> None:
    sequences = [[2, 3, 4, 5, 6], [7, 8], [9, 10, 11]]
    dataset = dataset_from_sequences(sequences, vocab_size=64)
    users, inputs, targets = evaluation_examples(dataset, "valid", max_len=3)
    np.testing.assert_array_equal(users, [0, 2])  # user 1 has no event before its valid target
    np.testing.assert_array_equal(inputs, [[2, 3, 4], [PAD_ID, PAD_ID, 9]])
    np.testing.assert_array_equal(targets, [5, 10])
    users, inputs, targets = evaluation_examples(dataset, "test", max_len=3)
    np.testing.assert_array_equal(inputs, [[3, 4, 5], [PAD_ID, 9, 10]])
    np.testing.assert_array_equal(targets, [6, 11])


def test_torch_dataset_batches_match_direct_indexing(tiny_dataset) -> None:
    windows = NextItemWindows(tiny_dataset, max_len=8)
    loader = DataLoader(windows, batch_size=5)  # the default collate stacks the pairs
    inputs, targets = next(iter(loader))
    assert inputs.shape == targets.shape == (5, 8)
    direct = windows[torch.arange(5)]
    assert torch.equal(inputs, direct[0]) and torch.equal(targets, direct[1])


def test_shuffled_batches_cover_each_example_once_in_a_seeded_order() -> None:
    first = list(shuffled_batches(10, 4, torch.Generator().manual_seed(3)))
    again = list(shuffled_batches(10, 4, torch.Generator().manual_seed(3)))
    assert [len(b) for b in first] == [4, 4, 2]
    assert sorted(torch.cat(first).tolist()) == list(range(10))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
