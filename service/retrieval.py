"""Recommendation retrieval: FAISS inner-product top-k with exclusions, popularity fallback.

Exclusions (items the user already has, ids the caller passes) are applied by over-fetching:
FAISS is asked for ``k + |excluded items in the catalogue|`` rows, without per-query ID selectors
(which IVF/HNSW support unevenly). An exact index then always leaves ``k`` survivors; an IVF
index returns fewer rows when the lists it probes hold fewer items than that, so an approximate
index can answer with fewer than ``k`` items (never with excluded ones).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from uservec.contract.manifest import BundleError

#: (item key, score); score is None for popularity results
Scored = tuple[str, float | None]


@dataclass(frozen=True, eq=False)
class Catalogue:
    """One recommendation head's item side: keys in index row order, the index, popularity."""

    domain: str
    keys: tuple[str, ...]
    index: faiss.Index
    popularity: tuple[str, ...]
    _rows: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rows", {key: row for row, key in enumerate(self.keys)})

    @property
    def size(self) -> int:
        return len(self.keys)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def rows_of(self, keys: Collection[str]) -> set[int]:
        """Index rows of the keys that are in the catalogue (others cannot be returned anyway)."""
        return {self._rows[key] for key in keys if key in self._rows}

    def search(
        self, queries: np.ndarray, excluded: Sequence[Collection[str]], k: int
    ) -> list[list[Scored]]:
        """Top-``k`` keys per query (B, D'), skipping each query's excluded keys."""
        excluded_rows = [self.rows_of(keys) for keys in excluded]
        fetch = min(self.size, k + max((len(rows) for rows in excluded_rows), default=0))
        if fetch == 0 or queries.shape[0] == 0:
            return [[] for _ in excluded_rows]
        xq = np.ascontiguousarray(queries, dtype=np.float32)  # (B, D')
        all_scores, all_rows = self.index.search(xq, fetch)  # (B, fetch) each
        results = []
        for scores, rows, skip in zip(all_scores, all_rows, excluded_rows, strict=True):
            kept: list[Scored] = [
                (self.keys[row], float(score))
                for score, row in zip(scores.tolist(), rows.tolist(), strict=True)
                if row >= 0 and row not in skip
            ]
            results.append(kept[:k])
        return results

    def popular(self, excluded: Collection[str], k: int) -> list[Scored]:
        """Cold-start list: the most popular items of the domain, minus the excluded ones."""
        out: list[Scored] = []
        for key in self.popularity:
            if key not in excluded:
                out.append((key, None))
                if len(out) == k:
                    break
        return out


def _read_keys(path: Path, what: str) -> tuple[str, ...]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: cannot read {what} ({exc})") from exc
    if isinstance(data, dict):  # tolerate {"keys": [...]} / {"items": [...]}
        data = data.get("keys", data.get("items"))
    if not isinstance(data, list) or not all(isinstance(key, str) for key in data):
        raise BundleError(f"{path}: {what} must be a JSON list of item keys")
    return tuple(data)


def load_catalogue(
    root: Path, domain: str, keys_file: str, index_file: str, popularity_file: str | None
) -> Catalogue:
    """Read a head's item keys, FAISS index and popularity list.

    The bundle has passed :func:`export.verify.load_and_verify` first (keys unique and of this
    domain, index of the keys' size with an inner-product metric, a popularity list of known
    keys), so this only reads.
    """
    keys = _read_keys(root / keys_file, "item keys")
    try:
        index = faiss.read_index(str(root / index_file))
    except RuntimeError as exc:
        raise BundleError(f"{root / index_file}: FAISS cannot read it ({exc})") from exc
    popularity = () if popularity_file is None else _read_keys(root / popularity_file,
                                                               "popularity list")
    return Catalogue(domain=domain, keys=keys, index=index, popularity=popularity)
