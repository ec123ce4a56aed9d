"""Preparation of event files larger than memory: streamed in chunks, written as memory maps.

The in-memory path (``prepare.prepare``) holds every event as Python strings at once. This one
reads a generic events file (CSV, CSV.GZ or Parquet; columns ``user_id``, ``item_id``,
``timestamp``, optionally ``domain``) with pyarrow datasets ``chunk_rows`` rows at a time and
applies the same rules (docs/protocols.md#common-rules) in three passes:

1. count events per user and per (item, domain): memory grows with distinct users and items;
2. map every event to (user rank, timestamp, catalogue index) and spill it to the bucket of its
   user's rank range (each bucket holds about ``chunk_rows`` events, on disk);
3. sort each bucket by (user, timestamp, item id), stable, and write it into its place in the
   memory-mapped ``.npy`` arrays of :meth:`PreparedDataset.save`'s layout.

Peak memory is bounded by the chunk size plus the user and item tables, not by the number of
events. The result loads lazily (``PreparedDataset.load(out, mmap=True)``), and the pretraining
windows (``batching.NextItemWindows``) read it a batch at a time. ``uservec run`` takes this path
for a generic file when ``data.chunk_rows`` > 0 (the users file, small, is read whole).

    dataset = prepare_chunked(Path("events.parquet"), Path("prepared/"), name="big")
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
from numpy.lib.format import open_memmap

from uservec.contract.fingerprint import sha256_file, sha256_json
from uservec.contract.ids import DOMAIN_SEPARATOR
from uservec.contract.vocab import Vocabulary
from uservec.training.data.dataset import DATASET_FORMAT_VERSION, PreparedDataset
from uservec.training.data.ordering import id_order, ranks

logger = logging.getLogger(__name__)

#: rows read per chunk, and events per spilled bucket
CHUNK_ROWS = 1_000_000
DEFAULT_DOMAIN = "default"
COLUMNS = ("user_id", "item_id", "timestamp", "domain")


def _chunks(path: Path, chunk_rows: int, names: Mapping[str, str]) -> Iterator[pd.DataFrame]:
    """The file's events, ``chunk_rows`` at a time, ids as str, timestamps as int64 seconds.

    ``names``: the file's column of each of :data:`COLUMNS` (default: the same name).
    """
    fmt = "parquet" if path.suffix == ".parquet" else "csv"
    source = pads.dataset(str(path), format=fmt)
    wanted = {names.get(c, c): c for c in COLUMNS}
    columns = [c for c in wanted if c in source.schema.names]
    for batch in source.to_batches(columns=columns, batch_size=chunk_rows):
        frame = batch.to_pandas().rename(columns=wanted)
        frame["user_id"] = frame["user_id"].astype(str)
        frame["item_id"] = frame["item_id"].astype(str)
        if "domain" not in frame:
            frame["domain"] = DEFAULT_DOMAIN
        frame["domain"] = frame["domain"].astype(str)
        stamps = frame["timestamp"]
        frame["timestamp"] = (stamps.astype(np.int64) if pd.api.types.is_numeric_dtype(stamps)
                              else pd.to_datetime(stamps, utc=True).astype(np.int64) // 10**9)
        yield frame


def _count(path: Path, chunk_rows: int, names: Mapping[str, str]
           ) -> tuple[pd.Series, pd.Series]:
    """Pass 1: (events per user id, events per (item id, domain))."""
    per_user: list[pd.Series] = []
    per_item: list[pd.Series] = []
    for frame in _chunks(path, chunk_rows, names):
        per_user.append(frame.groupby("user_id", sort=False).size())
        per_item.append(frame.groupby(["item_id", "domain"], sort=False).size())
        # fold the partial counts once they outgrow a chunk: memory stays at the distinct
        # users and items plus one chunk, however often each appears across the file
        if sum(len(part) for part in per_user) > chunk_rows:
            per_user = [_fold(per_user, [0])]
        if sum(len(part) for part in per_item) > chunk_rows:
            per_item = [_fold(per_item, [0, 1])]
    return _fold(per_user, [0]), _fold(per_item, [0, 1])


def _fold(parts: list[pd.Series], levels: list[int]) -> pd.Series:
    """Partial counts summed into one series per key."""
    return pd.concat(parts).groupby(level=levels, sort=False).sum()


def _catalog(item_counts: pd.Series) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Per raw item id: its owning domain (most frequent; ties alphabetical), key, catalogue
    index and id rank; plus the sorted domains that own an item."""
    frame = item_counts.rename("n").reset_index()
    frame = frame.sort_values(["item_id", "n", "domain"], ascending=[True, False, True],
                              kind="stable").drop_duplicates("item_id")
    frame["key"] = frame["domain"] + DOMAIN_SEPARATOR + frame["item_id"]
    total = item_counts.groupby(level=0).sum()
    frame["count"] = total.reindex(frame["item_id"]).to_numpy()
    frame = frame.sort_values("key", kind="stable").reset_index(drop=True)  # catalogue order
    frame["rank"] = ranks(id_order(frame["item_id"].to_numpy(dtype=str)))
    domains = tuple(sorted(frame["domain"].unique().tolist()))
    return frame.set_index("item_id"), domains


def _spill(path: Path, chunk_rows: int, names: Mapping[str, str], user_index: pd.Index,
           bucket_of_user: np.ndarray, item_index: pd.Index, work: Path) -> int:
    """Pass 2: append (user rank, timestamp, catalogue index) of every event to its bucket."""
    buckets = int(bucket_of_user.max()) + 1 if bucket_of_user.size else 0
    files = [open(work / f"bucket-{b}.bin", "ab") for b in range(buckets)]  # noqa: SIM115
    try:
        for frame in _chunks(path, chunk_rows, names):
            record = np.empty(len(frame), dtype=[("user", "<i8"), ("ts", "<i8"), ("item", "<i8")])
            record["user"] = user_index.get_indexer(frame["user_id"])
            record["ts"] = frame["timestamp"].to_numpy()
            record["item"] = item_index.get_indexer(frame["item_id"])
            bucket = bucket_of_user[record["user"]]
            order = np.argsort(bucket, kind="stable")  # file order kept within a bucket
            bounds = np.searchsorted(bucket[order], np.arange(buckets + 1))
            for b in np.flatnonzero(np.diff(bounds)):
                record[order[bounds[b] : bounds[b + 1]]].tofile(files[b])
    finally:
        for handle in files:
            handle.close()
    return buckets


def _buckets(events_per_user: np.ndarray, chunk_rows: int) -> np.ndarray:
    """(U,) bucket of each user (in rank order): consecutive users, ~``chunk_rows`` events each."""
    before = np.cumsum(events_per_user) - events_per_user
    return (before // max(chunk_rows, 1)).astype(np.int64)


def _write_arrays(out: Path, work: Path, buckets: int, offsets: np.ndarray,
                  catalog: pd.DataFrame, vocab_ids: np.ndarray, domains: tuple[str, ...]) -> None:
    """Pass 3: sort each bucket and write it into the memory-mapped per-event arrays."""
    total = int(offsets[-1])
    arrays = {name: open_memmap(out / f"{name}.npy", mode="w+", dtype=np.int64, shape=(total,))
              for name in ("items", "item_index", "timestamps", "event_domain")}
    item_rank = catalog["rank"].to_numpy()
    item_domain = np.searchsorted(np.asarray(domains), catalog["domain"].to_numpy(dtype=str))
    position = 0
    for b in range(buckets):
        record = np.fromfile(work / f"bucket-{b}.bin",
                             dtype=[("user", "<i8"), ("ts", "<i8"), ("item", "<i8")])
        order = np.lexsort((item_rank[record["item"]], record["ts"], record["user"]))
        item = record["item"][order]
        end = position + item.size
        arrays["item_index"][position:end] = item
        arrays["items"][position:end] = vocab_ids[item]
        arrays["timestamps"][position:end] = record["ts"][order]
        arrays["event_domain"][position:end] = item_domain[item]
        position = end
        (work / f"bucket-{b}.bin").unlink()
    for array in arrays.values():
        array.flush()


def prepare_chunked(path: Path, out: Path, *, name: str, min_count: int = 1,
                    chunk_rows: int = CHUNK_ROWS, names: Mapping[str, str] | None = None,
                    users: Callable[[np.ndarray], pd.DataFrame] | None = None,
                    fingerprint: str | None = None) -> PreparedDataset:
    """Prepare a generic events file into ``out`` in bounded memory (module docstring).

    ``names``: the file's column for each of :data:`COLUMNS`; ``users(user_ids)``: the users
    table aligned to the sorted user ids (from a users file); ``fingerprint``: recorded as the
    dataset's (the in-memory preparation's, whose arrays these equal).
    """
    names = dict(names or {})
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    work = out / "spill"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    user_counts, item_counts = _count(path, chunk_rows, names)
    user_ids = user_counts.index.to_numpy(dtype=str)
    order = id_order(user_ids)
    user_ids, events_per_user = user_ids[order], user_counts.to_numpy()[order]
    catalog, domains = _catalog(item_counts)
    vocab = Vocabulary.from_counts(dict(zip(catalog["key"], catalog["count"].tolist(),
                                            strict=True)), min_count)
    vocab_ids = np.asarray(vocab.encode(catalog["key"].tolist()), dtype=np.int64)
    logger.info("%s: %d events, %d users, %d items counted in %.0fs; spilling", name,
                int(events_per_user.sum()), user_ids.size, len(catalog),
                time.perf_counter() - started)
    buckets = _spill(path, chunk_rows, names, pd.Index(user_ids),
                     _buckets(events_per_user, chunk_rows), pd.Index(catalog.index), work)
    offsets = np.concatenate([[0], np.cumsum(events_per_user)]).astype(np.int64)
    logger.info("%s: %d buckets spilled at %.0fs; sorting", name, buckets,
                time.perf_counter() - started)
    _write_arrays(out, work, buckets, offsets, catalog, vocab_ids, domains)
    shutil.rmtree(work)
    np.save(out / "user_ids.npy", user_ids, allow_pickle=False)
    np.save(out / "offsets.npy", offsets, allow_pickle=False)
    np.save(out / "catalog.npy", catalog["key"].to_numpy(dtype=str), allow_pickle=False)
    np.save(out / "catalog_domain.npy", np.searchsorted(
        np.asarray(domains), catalog["domain"].to_numpy(dtype=str)).astype(np.int64))
    table = users(user_ids) if users is not None else None
    if table is not None:
        table.to_parquet(out / "users.parquet")
    _write_meta(out, path, name, domains, min_count, chunk_rows, vocab, table is not None,
                fingerprint)
    logger.info("%s prepared in %.0fs (chunks of %d rows)", name, time.perf_counter() - started,
                chunk_rows)
    return PreparedDataset.load(out, mmap=True)


def _write_meta(out: Path, path: Path, name: str, domains: tuple[str, ...], min_count: int,
                chunk_rows: int, vocab: Vocabulary, has_users: bool,
                fingerprint: str | None) -> None:
    """Vocabulary and ``meta.json`` last: its presence marks a complete preparation."""
    vocab.save(out / "vocab.json")
    files = {path.name: sha256_file(path)}
    settings = {"source": {"format": "generic", "chunked": True, "chunk_rows": chunk_rows},
                "files": files, "min_count": min_count}
    meta = {"format_version": DATASET_FORMAT_VERSION, "name": name,
            "fingerprint": fingerprint or sha256_json({"files": files, "min_count": min_count}),
            "domains": list(domains), "settings": settings, "has_users": has_users,
            "has_event_split": False}
    (out / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
