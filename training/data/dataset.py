"""The prepared dataset: the one in-memory/on-disk representation every loader produces.

Loaders (``loaders.py``) turn MovieLens, generic CSV/Parquet, PeterRec and CDRIB files into a
:class:`PreparedDataset`; everything downstream (pretraining, protocols, baselines, export) reads
only this. Events are stored CSR-style: user ``u``'s events, oldest first, are rows
``offsets[u]:offsets[u + 1]`` of the per-event arrays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from uservec.contract.vocab import Vocabulary

#: ``event_split`` codes for datasets that ship their own split (CDRIB); -1 = no published split.
SPLIT_TRAIN, SPLIT_VALID, SPLIT_TEST = 0, 1, 2

#: On-disk layout version of :meth:`PreparedDataset.save` (numpy ``.npy`` + Parquet + JSON).
DATASET_FORMAT_VERSION = 1
#: Array fields saved as ``<name>.npy`` (strings as fixed-width unicode, never pickled objects).
_ARRAY_FIELDS = (
    "user_ids", "offsets", "items", "item_index", "catalog", "catalog_domain", "timestamps",
    "event_domain",
)


def _plain_array(values: np.ndarray) -> np.ndarray:
    """Object arrays of str become fixed-width unicode so ``np.save`` needs no pickle."""
    values = np.asarray(values)
    return values.astype(str) if values.dtype == object else values


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

    def restrict_events(self, keep: np.ndarray, reason: str) -> PreparedDataset:
        """The same users, vocabulary and catalogue with only the ``keep`` (E,) events.

        Used to pretrain one backbone on a view that hides held-out events (P3 test users'
        target events); the fingerprint changes with the mask so checkpoints cannot mix views.
        """
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (self.num_events,):
            raise ValueError(f"mask has shape {keep.shape}, expected ({self.num_events},)")
        event_user = np.repeat(np.arange(self.num_users), self.lengths())
        per_user = np.bincount(event_user[keep], minlength=self.num_users)
        offsets = np.concatenate([[0], np.cumsum(per_user)]).astype(np.int64)
        digest = hashlib.sha256(np.packbits(keep).tobytes()).hexdigest()
        return dataclasses.replace(
            self,
            offsets=offsets,
            items=self.items[keep],
            item_index=self.item_index[keep],
            timestamps=self.timestamps[keep],
            event_domain=self.event_domain[keep],
            event_split=None if self.event_split is None else self.event_split[keep],
            fingerprint=hashlib.sha256(f"{self.fingerprint}:{digest}".encode()).hexdigest(),
            settings={**self.settings, "restricted": {"reason": reason,
                                                      "hidden_events": int((~keep).sum())}},
        )

    def summary(self) -> dict[str, Any]:
        """Counts for logs and reports: users, items, vocabulary, events, events per domain."""
        per_domain = np.bincount(self.event_domain, minlength=len(self.domains))
        return {
            "name": self.name,
            "users": self.num_users,
            "items": len(self.catalog),
            "vocab_size": self.vocab.size,
            "events": self.num_events,
            "domains": {d: int(n) for d, n in zip(self.domains, per_domain, strict=True)},
            "fingerprint": self.fingerprint,
        }

    def save(self, directory: str | Path) -> Path:
        """Write arrays (``.npy``), users (Parquet), vocabulary and metadata (JSON); no pickle.

        ``meta.json`` is written last, so its presence marks a complete save.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name in _ARRAY_FIELDS:
            array = _plain_array(getattr(self, name))
            np.save(directory / f"{name}.npy", array, allow_pickle=False)
        if self.event_split is not None:
            np.save(directory / "event_split.npy", self.event_split, allow_pickle=False)
        if self.users is not None:
            self.users.to_parquet(directory / "users.parquet")
        self.vocab.save(directory / "vocab.json")
        meta = {
            "format_version": DATASET_FORMAT_VERSION,
            "name": self.name,
            "fingerprint": self.fingerprint,
            "domains": list(self.domains),
            "settings": self.settings,
            "has_users": self.users is not None,
            "has_event_split": self.event_split is not None,
        }
        (directory / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = False) -> PreparedDataset:
        """Read a dataset written by :meth:`save` (or by ``data.streaming``).

        ``mmap``: the arrays are memory-mapped, read from disk as they are touched, so a dataset
        larger than memory can be trained on (``batching.NextItemWindows`` reads batch by batch).
        """
        directory = Path(directory)
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format_version") != DATASET_FORMAT_VERSION:
            raise ValueError(
                f"{directory}: prepared-data format {meta.get('format_version')!r} is not "
                f"supported (this code reads {DATASET_FORMAT_VERSION}); prepare the data again"
            )
        mode: Literal["r"] | None = "r" if mmap else None
        arrays = {name: np.load(directory / f"{name}.npy", mmap_mode=mode, allow_pickle=False)
                  for name in _ARRAY_FIELDS}
        split = None
        if meta["has_event_split"]:
            split = np.load(directory / "event_split.npy", allow_pickle=False)
        users = pd.read_parquet(directory / "users.parquet") if meta["has_users"] else None
        return cls(
            name=meta["name"],
            vocab=Vocabulary.load(directory / "vocab.json"),
            domains=tuple(meta["domains"]),
            users=users,
            event_split=split,
            fingerprint=meta["fingerprint"],
            settings=meta["settings"],
            **arrays,
        )
