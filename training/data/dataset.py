"""The prepared dataset: the one in-memory/on-disk representation every loader produces.

Loaders (``loaders.py``) turn MovieLens, generic CSV/Parquet, PeterRec and CDRIB files into a
:class:`PreparedDataset`; everything downstream (pretraining, protocols, baselines, export) reads only
this. Events are stored CSR-style: user ``u``'s events, oldest first, are rows
``offsets[u]:offsets[u + 1]`` of the per-event arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from uservec.vocab import Vocabulary

#: ``event_split`` codes for datasets that ship their own split (CDRIB); -1 = no published split.
SPLIT_TRAIN, SPLIT_VALID, SPLIT_TEST = 0, 1, 2


@dataclass(frozen=True, eq=False)
class PreparedDataset:
    """Users' behaviour sequences with vocabulary, domains and (optional) user attributes."""

    name: str
    #: vocabulary after ``min_count`` (rare items map to UNK_ID in ``items``)
    vocab: Vocabulary
    #: (U,) raw user ids as str; users sorted by id (numerically when every id is an integer)
    user_ids: np.ndarray
    #: (U + 1,) int64 CSR offsets into the per-event arrays
    offsets: np.ndarray
    #: (E,) int64 vocabulary ids (UNK_ID for items below min_count)
    items: np.ndarray
    #: (E,) int64 index into ``catalog``: every distinct item, rare ones included
    item_index: np.ndarray
    #: (I,) str item keys ``domain::raw_id`` of every distinct item, sorted
    catalog: np.ndarray
    #: (I,) int64 index into ``domains`` of each catalog item
    catalog_domain: np.ndarray
    #: (E,) int64 timestamps (file order 0..E-1 where the data has none)
    timestamps: np.ndarray
    #: sorted domain names
    domains: tuple[str, ...]
    #: (E,) int64 index into ``domains`` of each event (the domain of its item)
    event_domain: np.ndarray
    #: user attributes, row u = user ``user_ids[u]``, raw values; None when no users file
    users: pd.DataFrame | None = None
    #: (E,) int8 SPLIT_* codes when the dataset ships its own split, else None
    event_split: np.ndarray | None = None
    #: sha256 of the inputs and preparation settings
    fingerprint: str = ""
    #: preparation settings and source description (recorded in reports and checkpoints)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_events(self) -> int:
        return len(self.items)

    def sequence(self, user: int) -> np.ndarray:
        """Vocabulary ids of user ``user``'s events, oldest first."""
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def lengths(self) -> np.ndarray:
        """(U,) number of events per user."""
        return np.diff(self.offsets)
