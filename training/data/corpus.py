"""Another population's behaviour and labels in a task dataset's vocabulary (pretrain.corpus).

More users than labels: a backbone can pretrain on a larger population than the one whose
attributes it predicts (MovieLens-1M's 6,040 users for MovieLens-100K's 943), and the bag
baselines can train on that population's labelled users too. Both need the corpus' items in the
task dataset's catalogue: by normalised title + year (``by = "title"``, :mod:`.loaders.titles`:
1,644 of ML-100K's 1,682 films match ML-1M) or by equal raw ids (``by = "id"``). Unmatched corpus
items are dropped; a corpus user keeps their matched events in the corpus' prepared order::

    corpus = load_corpus(cfg.pretrain.corpus, cfg.data, dataset)
    corpus.sequences[0]      # vocabulary ids of the task dataset
    corpus.bags              # (corpus users, task catalogue) binary, for the bag baselines
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from uservec.contract.ids import DOMAIN_SEPARATOR
from uservec.training.config import CorpusConfig, DataConfig
from uservec.training.data.dataset import PreparedDataset
from uservec.training.data.loaders import DataError, RawData, load_source
from uservec.training.data.loaders.titles import match_titles
from uservec.training.data.prepare import prepare
from uservec.training.evaluation.bags import binary_matrix

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Corpus:
    """A corpus' users as sequences of the task dataset's vocabulary ids, with their attributes."""

    name: str
    #: per corpus user (in the corpus' id order): vocabulary ids of their matched events
    sequences: list[np.ndarray]
    #: (corpus users, task catalogue) binary item bags of the matched events
    bags: sp.csr_matrix
    #: corpus user attributes, row i = ``sequences[i]``; None without a users file
    users: pd.DataFrame | None
    #: how much matched (items, events, users) for the report
    summary: dict[str, Any] = field(default_factory=dict)


def _source_config(corpus: CorpusConfig) -> DataConfig:
    return DataConfig(format=corpus.format, path=corpus.path, users_path=corpus.users_path)


def catalog_map(corpus: PreparedDataset, corpus_titles: pd.Series | None,
                task: PreparedDataset, task_titles: pd.Series | None, by: str) -> np.ndarray:
    """(corpus catalogue,) index into the task catalogue of each corpus item, -1 if unmatched."""
    def raw_ids(catalog: np.ndarray) -> np.ndarray:
        return np.array([key.partition(DOMAIN_SEPARATOR)[2] for key in catalog.tolist()])

    corpus_raw, task_raw = raw_ids(corpus.catalog), raw_ids(task.catalog)
    if by == "title":
        if corpus_titles is None or task_titles is None:
            raise DataError("pretrain.corpus.by = 'title' needs item titles in both sources "
                            "(MovieLens u.item / movies.dat); use by = 'id' otherwise")
        matched = match_titles(corpus_titles, task_titles)
    else:
        matched = {item: item for item in corpus_raw.tolist()}
    position = {item: i for i, item in enumerate(task_raw.tolist())}
    return np.array([position.get(matched.get(item, ""), -1) for item in corpus_raw.tolist()],
                    dtype=np.int64)


def load_corpus(corpus: CorpusConfig, data: DataConfig, task: PreparedDataset) -> Corpus:
    """Read the corpus, map its items onto ``task``'s catalogue (module docstring)."""
    raw: RawData = load_source(_source_config(corpus))
    prepared = prepare(raw, name=corpus.path or corpus.format)
    task_titles = load_source(data).item_titles if corpus.by == "title" else None
    mapping = catalog_map(prepared, raw.item_titles, task, task_titles, corpus.by)
    task_vocab = task.vocab.encode(task.catalog.tolist())  # task catalogue -> vocabulary id
    mapped = mapping[prepared.item_index]  # (E,) task catalogue index, -1 unmatched
    keep = mapped >= 0
    owner = np.repeat(np.arange(prepared.num_users), prepared.lengths())
    counts = np.bincount(owner[keep], minlength=prepared.num_users)
    cuts = np.cumsum(counts)[:-1]
    sequences = np.split(task_vocab[mapped[keep]], cuts)
    bags = binary_matrix(owner[keep], mapped[keep], (prepared.num_users, task.catalog.size))
    summary = {
        "source": corpus.path or corpus.format, "by": corpus.by,
        "users": int(prepared.num_users), "items": int(prepared.catalog.size),
        "items_matched": int((mapping >= 0).sum()), "events": int(prepared.num_events),
        "events_kept": int(keep.sum()),
        "task_items_covered": int(np.unique(mapping[mapping >= 0]).size),
        "timestamps": str(prepared.settings.get("info", {}).get("timestamps", "given")),
    }
    logger.info("corpus %s: %d users, %d of %d items matched (%s), %d of %d events kept",
                summary["source"], summary["users"], summary["items_matched"], summary["items"],
                corpus.by, summary["events_kept"], summary["events"])
    users = None if prepared.users is None else prepared.users.reset_index(drop=True)
    return Corpus(prepared.name, list(sequences), bags, users, summary)
