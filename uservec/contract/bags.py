"""The item bag a served wide part reads, built the same way offline and online.

A wide part (a linear model on the user's item bag; wide & deep heads) reads every event the
user sent, not only the latest ``max_len`` the encoder reads. The graph then takes a second
input, ``bag``: a dense ``(B, V)`` float32 0/1 matrix, row b column i = 1 when user b has an
event of vocabulary id i (padding and UNK never set). The IDF weights, the vocabulary columns
and the linear maps live inside the graph, so this is the only step a reader performs.

A user's model input travels through the service's cache and batching as one int64 array,
:func:`pack` (window ids, :data:`BAG_MARK`, sorted distinct bag ids), so that the cache key
covers the bag and nothing between the request and the graph needs to know about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from uservec.contract.ids import NUM_RESERVED

#: name of the bag input of a graph that has wide parts
BAG_INPUT: Final[str] = "bag"
#: separates the window from the bag in a packed input (never a vocabulary id)
BAG_MARK: Final[int] = -1


def bag_ids(ids: np.ndarray | Sequence[int]) -> np.ndarray:
    """Sorted distinct item ids of a sequence (reserved ids dropped)."""
    values = np.asarray(ids, dtype=np.int64)
    return np.unique(values[values >= NUM_RESERVED])


def pack(window: np.ndarray, bag: np.ndarray | None) -> np.ndarray:
    """One int64 array holding the encoder's window and (when given) the user's bag ids."""
    window = np.asarray(window, dtype=np.int64)
    if bag is None:
        return window
    return np.concatenate([window, [BAG_MARK], np.asarray(bag, dtype=np.int64)])


def unpack(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(window, bag ids or None) of a :func:`pack`-ed array."""
    marks = np.flatnonzero(packed == BAG_MARK)
    if marks.size == 0:
        return packed, None
    return packed[: marks[0]], packed[marks[0] + 1 :]


def bag_matrix(bags: Sequence[np.ndarray], vocab_size: int) -> np.ndarray:
    """(B, V) float32 0/1 rows of the users' bag ids (reserved and out-of-range ids ignored)."""
    out = np.zeros((len(bags), vocab_size), dtype=np.float32)
    for row, ids in enumerate(bags):
        ids = np.asarray(ids, dtype=np.int64)
        ids = ids[(ids >= NUM_RESERVED) & (ids < vocab_size)]
        out[row, ids] = 1.0
    return out


def graph_feed(input_names: Sequence[str], items: np.ndarray, vocab_size: int,
               bags: Sequence[np.ndarray] | None = None) -> dict[str, Any]:
    """The onnxruntime feed of a graph: ``items`` and, when it takes one, the bag.

    Without ``bags`` the bag is each row's own items (what a caller that only has the window,
    such as a smoke test or a benchmark, can build).
    """
    feed: dict[str, Any] = {input_names[0]: items}
    if BAG_INPUT in input_names:
        rows = bags if bags is not None else [bag_ids(row) for row in items]
        feed[BAG_INPUT] = bag_matrix(rows, vocab_size)
    return feed
