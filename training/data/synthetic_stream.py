"""The demo's generator (``synthetic.py``), scaled: events written to Parquet a chunk of users at
a time, so a 50M-event file is made in bounded memory (benchmarks of data larger than memory).

Same item structure, tastes, topic-persistent walks and timestamps as :func:`generate_synthetic`;
the random draws are made per chunk, so the events differ from ``generate_synthetic``'s for the
same seed. Ids are integers (users ``1..``, items ``0..``); there is no users file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from uservec.training.data.synthetic import (
    _EPOCH,
    DEFAULT_TOPICS,
    MAX_EVENTS,
    MIN_EVENTS,
    _item_structure,
    _walk,
    domain_names,
)

logger = logging.getLogger(__name__)

MEAN_EVENTS = (MIN_EVENTS + MAX_EVENTS) / 2


def write_synthetic_events(path: Path, n_events: int, n_items: int, n_domains: int = 2,
                           seed: int = 0, chunk_users: int = 20_000) -> int:
    """Write about ``n_events`` generated events to ``path`` (Parquet); returns the count."""
    rng = np.random.default_rng(seed)
    n_topics = max(1, min(DEFAULT_TOPICS, n_items // n_domains))
    topic_of, item_domain, members, cdfs, successor = _item_structure(n_items, n_domains,
                                                                       n_topics, rng)
    names = pa.array(domain_names(n_domains))
    n_users = max(1, round(n_events / MEAN_EVENTS))
    schema = pa.schema([("user_id", pa.int64()), ("item_id", pa.int64()),
                        ("timestamp", pa.int64()),
                        ("domain", pa.dictionary(pa.int32(), pa.string()))])
    written = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for first in range(0, n_users, chunk_users):
            count = min(chunk_users, n_users - first)
            taste = rng.dirichlet(np.full(n_topics, 0.3), size=count)
            lengths = rng.integers(MIN_EVENTS, MAX_EVENTS + 1, size=count)
            items = np.concatenate([
                _walk(int(n), np.cumsum(taste[u]), members, cdfs, topic_of, successor, rng)
                for u, n in enumerate(lengths)])
            starts = _EPOCH + rng.integers(0, 365 * 86_400, size=count)
            gaps = np.cumsum(rng.integers(60, 3 * 86_400, size=items.size))
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            elapsed = gaps - np.repeat(gaps[offsets[:-1]], lengths)
            users = np.repeat(np.arange(first + 1, first + count + 1), lengths)
            domain = pa.DictionaryArray.from_arrays(
                pa.array(item_domain[items].astype(np.int32)), names)
            writer.write_table(pa.table(
                [users, items.astype(np.int64), np.repeat(starts, lengths) + elapsed, domain],
                schema=schema))
            written += items.size
    logger.info("wrote %d events of %d users to %s", written, n_users, path)
    return written
