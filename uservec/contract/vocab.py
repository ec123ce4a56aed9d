"""Item vocabulary: namespaced item keys <-> contiguous integer ids, with each item's domain.

Training builds it once from the prepared data; the bundle ships it as ``vocab.json``; the service
maps request item ids through the very same object, so an id means the same item on both sides.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from uservec.contract.ids import NUM_RESERVED, RESERVED_IDS, UNK_ID, item_key, split_item_key

VOCAB_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Vocabulary:
    """Item keys (``domain::raw_id``) in id order, starting after the reserved ids."""

    keys: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _domains: tuple[str, ...] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {key: NUM_RESERVED + pos for pos, key in enumerate(self.keys)}
        if len(index) != len(self.keys):
            raise ValueError("vocabulary keys must be unique")
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], min_count: int = 1) -> Vocabulary:
        """Keep items seen at least ``min_count`` times, most frequent first (ties: by key)."""
        kept = [key for key, count in counts.items() if count >= min_count]
        kept.sort(key=lambda key: (-counts[key], key))
        return cls(tuple(kept))

    @property
    def size(self) -> int:
        """Number of ids including the reserved ones (the embedding table's row count)."""
        return NUM_RESERVED + len(self.keys)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def id_of(self, key: str) -> int:
        """Id of a namespaced item key; ``UNK_ID`` when it is not in the vocabulary."""
        return self._index.get(key, UNK_ID)

    def encode(self, keys: Iterable[str]) -> np.ndarray:
        """Ids of many keys (unknown ones map to ``UNK_ID``)."""
        return np.fromiter((self._index.get(k, UNK_ID) for k in keys), dtype=np.int64)

    def encode_items(self, item_ids: Sequence[str], domains: Sequence[str | None]) -> np.ndarray:
        """Ids of raw item ids with their domains."""
        return self.encode(item_key(i, d) for i, d in zip(item_ids, domains, strict=True))

    def key_of(self, item_id: int) -> str:
        """Key of an id; reserved ids return their reserved name."""
        if item_id < NUM_RESERVED:
            return next(name for name, rid in RESERVED_IDS.items() if rid == item_id)
        return self.keys[item_id - NUM_RESERVED]

    def domains(self) -> list[str]:
        """Sorted distinct domains of the vocabulary.

        Computed once and kept: the service reports them per request (``GET /v1/bundle``), and
        splitting a million keys takes a sixth of a second.
        """
        if self._domains is None:
            domains = tuple(sorted({split_item_key(key)[0] for key in self.keys}))
            object.__setattr__(self, "_domains", domains)
        assert self._domains is not None
        return list(self._domains)

    def domain_ids(self) -> np.ndarray:
        """Per id, the index of its domain in :meth:`domains` (-1 for reserved ids)."""
        names = self.domains()
        position = {name: pos for pos, name in enumerate(names)}
        out = np.full(self.size, -1, dtype=np.int64)
        for pos, key in enumerate(self.keys):
            out[NUM_RESERVED + pos] = position[split_item_key(key)[0]]
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": VOCAB_FORMAT_VERSION,
            "reserved": dict(RESERVED_IDS),
            "keys": list(self.keys),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Vocabulary:
        """The vocabulary of :meth:`to_json`'s output; ValueError says what does not fit."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a vocabulary is a JSON object, got {type(data).__name__}")
        version = data.get("format_version")
        if version != VOCAB_FORMAT_VERSION:
            raise ValueError(
                f"vocabulary format version {version!r} is not supported "
                f"(this code reads version {VOCAB_FORMAT_VERSION})"
            )
        if dict(data.get("reserved", {})) != RESERVED_IDS:
            raise ValueError(
                f"vocabulary reserved ids {data.get('reserved')!r} differ from {RESERVED_IDS!r}"
            )
        keys = data.get("keys")
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise ValueError("vocabulary 'keys' must be a list of item keys (strings)")
        return cls(tuple(keys))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json()), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
