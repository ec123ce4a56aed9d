"""Tiny seeded PreparedDatasets built straight from arrays (no loader, no files)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
import torch

from uservec.contract.ids import NUM_RESERVED, item_key
from uservec.contract.vocab import Vocabulary
from uservec.training.data.dataset import PreparedDataset


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Tiny tensors gain nothing from threads, and on shared cores threads spin-wait for seconds."""
    torch.set_num_threads(1)


def make_dataset(
    sequences: Sequence[Sequence[int]], vocab_size: int, name: str = "tiny"
) -> PreparedDataset:
    """A one-domain dataset whose user u has the vocabulary ids ``sequences[u]``, oldest first."""
    vocab = Vocabulary(tuple(item_key(str(i)) for i in range(NUM_RESERVED, vocab_size)))
    items = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in sequences])]).astype(np.int64)
    keys = np.array(vocab.keys)
    catalog = np.sort(keys)
    return PreparedDataset(
        name=name,
        vocab=vocab,
        user_ids=np.array([str(u) for u in range(len(sequences))]),
        offsets=offsets,
        items=items,
        item_index=np.searchsorted(catalog, keys[items - NUM_RESERVED]),
        catalog=catalog,
        catalog_domain=np.zeros(len(catalog), dtype=np.int64),
        timestamps=np.arange(len(items), dtype=np.int64),
        domains=("default",),
        event_domain=np.zeros(len(items), dtype=np.int64),
        fingerprint=f"{name}-{len(items)}",
    )


@pytest.fixture
def dataset_from_sequences() -> Callable[..., PreparedDataset]:
    """The :func:`make_dataset` builder, for tests that hand-write their sequences."""
    return make_dataset


@pytest.fixture
def tiny_dataset() -> PreparedDataset:
    """40 users over 62 real items (vocab 64); the next item is usually the current one + 1."""
    rng = np.random.default_rng(0)
    vocab_size, num_real = 64, 64 - NUM_RESERVED
    sequences = []
    for _ in range(40):
        item = int(rng.integers(num_real))
        sequence = []
        for _ in range(int(rng.integers(10, 21))):
            sequence.append(NUM_RESERVED + item)
            step = 1 if rng.random() < 0.9 else int(rng.integers(num_real))
            item = (item + step) % num_real
        sequences.append(sequence)
    return make_dataset(sequences, vocab_size)


@pytest.fixture
def labelled(dataset_from_sequences):
    """80 users in two classes with mostly disjoint items (:func:`adapt_helpers.labelled_data`)."""
    from adapt_helpers import labelled_data

    return labelled_data(dataset_from_sequences, 80)

