"""Raw events -> :class:`PreparedDataset`: the common rules, applied once
(docs/protocols.md#common-rules).

Every format's loader yields the same event table (``loaders.RawData``); this module turns it into
the prepared arrays the same way for all of them:

- one event per source row (repeated user-item events stay);
- users sorted by id, a user's events by (timestamp, item id), stable; ids compare numerically when
  every id is an integer, else as strings;
- an item listed under several domains belongs to its most frequent one (ties: alphabetically
  first); item keys are ``domain::raw_id``;
- the vocabulary keeps items seen at least ``min_count`` times; ``catalog`` keeps every item.

``load_dataset`` caches the result on disk under a fingerprint of the input files and settings.

Usage::

    from uservec.training.config import DataConfig
    from uservec.training.data.prepare import load_dataset
    data = load_dataset(DataConfig(format="movielens", path="/work/shared/data/movielens-100k"))
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from uservec.contract.fingerprint import sha256_file, sha256_json
from uservec.contract.ids import DOMAIN_SEPARATOR
from uservec.contract.vocab import Vocabulary
from uservec.training.config import DataConfig
from uservec.training.data.dataset import PreparedDataset
from uservec.training.data.loaders import (
    SYNTHETIC_SEED,
    DataError,
    RawData,
    describe_source,
    load_source,
)
from uservec.training.data.ordering import factorize, id_order, item_catalog, ranks, sort_ids
from uservec.training.data.synthetic import generate_synthetic
from uservec.training.data.users import user_attributes
from uservec.training.run_dir import RunDir, RunDirError

__all__ = [
    "DataError",
    "RawData",
    "compute_fingerprint",
    "dataset_name",
    "load_dataset",
    "load_raw",
    "load_run_dataset",
    "prepare",
    "prepare_run_dataset",
    "sort_ids",
]

logger = logging.getLogger(__name__)

#: Bump when ``prepare`` output for the same raw events changes (invalidates cached preparations).
PREPARE_VERSION = 1
#: users-file values that mean "no label" unless ``data.missing_labels`` says otherwise
DEFAULT_MISSING_LABELS: tuple[str, ...] = ("",)
_GENERIC_STEMS = {"interactions", "events", "ratings", "data", "train"}


def load_raw(config: DataConfig) -> RawData:
    """Parse the configured source into raw events (no ordering or vocabulary yet)."""
    started = time.perf_counter()
    if config.format == "synthetic":
        raw = generate_synthetic(
            config.synthetic_users, config.synthetic_items, config.synthetic_domains,
            seed=SYNTHETIC_SEED, basket=config.synthetic_basket,
        )
    else:
        raw = load_source(config)
    logger.info(
        "loaded %s data: %d events in %.2fs",
        config.format, len(raw.interactions), time.perf_counter() - started,
    )
    return raw


def _file_hashes(files: tuple[Path, ...] | list[Path]) -> list[list[str]]:
    """[[parent/name, sha256], ...]: names, not absolute paths, so a moved copy keeps its hash."""
    return [[f"{Path(f).parent.name}/{Path(f).name}", sha256_file(f)] for f in files]


def compute_fingerprint(
    files: tuple[Path, ...] | list[Path], settings: dict[str, Any], min_count: int,
    missing_labels: Sequence[str] = DEFAULT_MISSING_LABELS,
) -> str:
    """sha256 of the input files' contents, the loader settings and the preparation settings."""
    return _fingerprint(_file_hashes(files), settings, min_count, missing_labels)


def _fingerprint(hashes: list[list[str]], settings: dict[str, Any], min_count: int,
                 missing_labels: Sequence[str]) -> str:
    content: dict[str, Any] = {
        "files": hashes,
        "settings": settings,
        "min_count": min_count,
        "prepare_version": PREPARE_VERSION,
    }
    # only when set: preparations made before the setting existed keep their fingerprint
    if tuple(missing_labels) != DEFAULT_MISSING_LABELS:
        content["missing_labels"] = sorted(set(missing_labels))
    return sha256_json(content)


def _check_interactions(raw: RawData) -> pd.DataFrame:
    frame = raw.interactions
    missing = [c for c in ("user_id", "item_id", "timestamp", "domain") if c not in frame.columns]
    if missing:
        raise DataError(f"raw interactions lack column(s) {missing}")
    if frame.empty:
        raise DataError(f"no events in {[str(f) for f in raw.files] or 'the raw data'}")
    domains = pd.Series(frame["domain"].unique(), dtype=str)
    bad = domains[(domains == "") | domains.str.contains(DOMAIN_SEPARATOR, regex=False)]
    if len(bad):
        raise DataError(f"invalid domain name(s) {bad.tolist()} (empty or containing '::')")
    return frame


def prepare(
    raw: RawData, min_count: int = 1, name: str = "dataset",
    missing_labels: Sequence[str] = DEFAULT_MISSING_LABELS,
) -> PreparedDataset:
    """Apply the ordering, domain, vocabulary and CSR rules to raw events (see module docs);
    users-file values in ``missing_labels`` become NA (unlabelled)."""
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    started = time.perf_counter()
    frame = _check_interactions(raw)
    user_ids, user_rank = sort_ids(frame["user_id"])
    item_code, item_distinct = factorize(frame["item_id"])
    item_rank = ranks(id_order(item_distinct))[item_code]
    timestamps = frame["timestamp"].to_numpy(dtype=np.int64)
    order = np.lexsort((item_rank, timestamps, user_rank))  # stable: file order breaks full ties
    items = item_catalog(item_code, item_distinct, frame["domain"], raw.item_ids_per_domain)
    counts = np.bincount(items.item_index, minlength=len(items.catalog))
    vocab = Vocabulary.from_counts(
        dict(zip(items.catalog.tolist(), counts.tolist(), strict=True)), min_count
    )
    item_index = items.item_index[order]
    offsets = np.concatenate([[0], np.cumsum(np.bincount(user_rank, minlength=len(user_ids)))])
    hashes = _file_hashes(raw.files)
    dataset = PreparedDataset(
        name=name,
        vocab=vocab,
        user_ids=user_ids,
        offsets=offsets.astype(np.int64),
        items=vocab.encode(items.catalog.tolist())[item_index],
        item_index=item_index,
        catalog=items.catalog,
        catalog_domain=items.catalog_domain,
        timestamps=timestamps[order],
        domains=items.domains,
        event_domain=items.catalog_domain[item_index],
        users=None if raw.users is None else user_attributes(raw.users, user_ids, missing_labels),
        event_split=(frame["split"].to_numpy(dtype=np.int8)[order]
                     if "split" in frame.columns else None),
        fingerprint=_fingerprint(hashes, raw.settings, min_count, missing_labels),
        settings={
            "source": dict(raw.settings),
            "info": dict(raw.info),
            "files": hashes,
            "min_count": min_count,
            "prepare_version": PREPARE_VERSION,
        },
    )
    logger.info(
        "prepared %s: %d users, %d items (%d in vocabulary), %d events, %d domains in %.2fs",
        name, dataset.num_users, len(items.catalog), vocab.size, dataset.num_events,
        len(items.domains), time.perf_counter() - started,
    )
    return dataset


def dataset_name(config: DataConfig) -> str:
    """A readable dataset name: the folder or file name (its folder for generic file names)."""
    if config.format == "synthetic":
        basket = f"-{config.synthetic_basket}b" if config.synthetic_basket else ""
        return (
            f"synthetic-{config.synthetic_users}u-{config.synthetic_items}i-"
            f"{config.synthetic_domains}d{basket}"
        )
    path = Path(config.path or "data").expanduser()
    stem = path.name.split(".", 1)[0] if path.is_file() else path.name
    if stem.lower() in _GENERIC_STEMS:
        stem = path.resolve().parent.name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem) or "data"


def load_dataset(config: DataConfig, cache_dir: Path | str | None = None) -> PreparedDataset:
    """Load and prepare ``config``'s data, reusing ``cache_dir/<name>-<fingerprint>`` when present.

    ``cache_dir`` defaults to ``config.cache_dir``; with neither, nothing is cached.
    """
    dataset, _ = _load_or_prepare(config, cache_dir if cache_dir is not None else config.cache_dir)
    return dataset


def _load_or_prepare(
    config: DataConfig, cache_root: Path | str | None
) -> tuple[PreparedDataset, Path | None]:
    """The prepared dataset, and the cache folder that holds it (None when not cached)."""
    files, settings = describe_source(config)
    fingerprint = compute_fingerprint(files, settings, config.min_count, config.missing_labels)
    name = dataset_name(config)
    target = Path(cache_root) / f"{name}-{fingerprint[:16]}" if cache_root else None
    cached = _read_prepared(target, fingerprint) if target is not None else None
    if cached is not None:
        logger.info("using cached prepared data %s", target)
        return cached, target
    dataset = prepare(load_raw(config), config.min_count, name, config.missing_labels)
    if dataset.fingerprint != fingerprint:
        raise DataError(f"{name}: input files changed while loading; run again")
    if target is not None and _save_atomically(dataset, target):
        return dataset, target
    return dataset, None


def _prepare_chunked(config: DataConfig, run: RunDir, files: list[Path],
                     fingerprint: str) -> PreparedDataset:
    """``data.chunk_rows``: the generic file prepared in chunks into the run folder, mapped."""
    from uservec.training.data.chunked import prepare_chunked
    from uservec.training.data.loaders.generic import generic_users

    names = {"user_id": config.user_col, "item_id": config.item_col,
             "timestamp": config.timestamp_col, "domain": config.domain_col or "domain"}
    users = None
    if config.users_path:
        table = generic_users(Path(config.users_path).expanduser(), config.user_col)
        users = lambda ids: user_attributes(table, ids, config.missing_labels)  # noqa: E731
    temporary = run.prepared_root / f".chunked-{os.getpid()}"
    dataset = prepare_chunked(files[0], temporary, name=dataset_name(config),
                              min_count=config.min_count, chunk_rows=config.chunk_rows,
                              names=names, users=users, fingerprint=fingerprint)
    run.save_dataset(dataset, source=temporary)  # hard links where possible
    shutil.rmtree(temporary, ignore_errors=True)
    return PreparedDataset.load(run.dataset_dir, mmap=True)


def _read_prepared(directory: Path, fingerprint: str, mmap: bool = False
                   ) -> PreparedDataset | None:
    """A saved preparation with this fingerprint, or None (absent, unreadable or stale)."""
    if not (directory / "meta.json").is_file():
        return None
    try:
        saved = PreparedDataset.load(directory, mmap=mmap)
    except (OSError, ValueError, KeyError) as exc:
        logger.warning("ignoring unreadable prepared data %s: %s", directory, exc)
        return None
    return saved if saved.fingerprint == fingerprint else None


def _save_atomically(dataset: PreparedDataset, target: Path) -> bool:
    """Write to a temporary sibling and rename, so a concurrent reader never sees half a save.

    Returns whether ``target`` now holds this dataset.
    """
    temporary = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    dataset.save(temporary)
    try:
        temporary.rename(target)
    except OSError:  # another process saved the same fingerprint first
        shutil.rmtree(temporary, ignore_errors=True)
        return (target / "meta.json").is_file()
    logger.info("cached prepared data in %s", target)
    return True


def prepare_run_dataset(config: DataConfig, run: RunDir) -> PreparedDataset:
    """The preparation stage of a run: the dataset, kept in the run folder for later stages.

    Reuses the run folder's copy when the raw files still have its fingerprint (a resumed run),
    else loads (or prepares and caches) it under ``data.cache_dir`` and keeps a copy (hard
    links where possible) in the run folder.
    """
    files, settings = describe_source(config)
    fingerprint = compute_fingerprint(files, settings, config.min_count, config.missing_labels)
    chunked = config.chunk_rows > 0 and config.format == "generic"
    kept = _read_prepared(run.dataset_dir, fingerprint, mmap=chunked)
    if kept is not None:
        logger.info("using the run's prepared data %s", run.dataset_dir)
        return kept
    if chunked:
        return _prepare_chunked(config, run, files, fingerprint)
    dataset, cached = _load_or_prepare(config, config.cache_dir)
    run.save_dataset(dataset, source=cached)
    return dataset


def load_run_dataset(config: DataConfig, run_dir: Path | str) -> PreparedDataset:
    """The dataset of a finished run, from the run folder alone (no raw files needed).

    A run folder from before prepared data was kept there is prepared again from ``config``.
    """
    run = RunDir(run_dir)
    try:
        return run.load_dataset()
    except RunDirError:
        logger.warning("%s keeps no prepared data; preparing it from the raw files", run.root)
        return load_dataset(config, config.cache_dir or run.prepared_root)
