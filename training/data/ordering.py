"""How raw ids and domains become the prepared order and catalogue (docs/protocols.md#common-rules).

Ids compare numerically when every id is an integer, else as strings; an item listed under
several domains belongs to its most frequent one (ties: alphabetically first), and an item's key
is ``domain::raw_id``. :mod:`training.data.prepare` applies these to every format alike.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from uservec.contract.ids import DOMAIN_SEPARATOR

logger = logging.getLogger(__name__)

_INTEGER_PATTERN = r"[+-]?\d+"


def factorize(values: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per-value int64 code, distinct values as str) in order of first appearance."""
    codes, uniques = pd.factorize(pd.Series(values, dtype=str), sort=False)
    return codes.astype(np.int64), np.asarray(uniques, dtype=str)


def id_order(distinct: np.ndarray) -> np.ndarray:
    """Permutation sorting distinct ids: numerically when all are integers, else as strings."""
    if len(distinct) and pd.Series(distinct, dtype=str).str.fullmatch(_INTEGER_PATTERN).all():
        # Equal values spelled differently ("7", "07") tie-break as text.
        try:
            return np.lexsort((distinct, distinct.astype(np.int64)))
        except OverflowError:  # beyond int64: Python ints
            return np.asarray(
                sorted(range(len(distinct)), key=lambda i: (int(distinct[i]), distinct[i])),
                dtype=np.int64,
            )
    return np.argsort(distinct, kind="stable")


def ranks(order: np.ndarray) -> np.ndarray:
    """The inverse permutation: ``ranks(order)[order[i]] == i``."""
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def sort_ids(values: np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(distinct ids in id order, per-value rank in that order); see :func:`id_order`."""
    codes, distinct = factorize(values)
    order = id_order(distinct)
    return distinct[order], ranks(order)[codes]


def _owning_domains(item_code: np.ndarray, domain_code: np.ndarray, n_domains: int) -> np.ndarray:
    """Per distinct item, the code of its most frequent domain (ties: smallest code).

    Domain codes must be in alphabetical order so that "smallest code" means "alphabetically first".
    """
    pairs, counts = np.unique(item_code * n_domains + domain_code, return_counts=True)
    items, domains = pairs // n_domains, pairs % n_domains
    order = np.lexsort((domains, -counts, items))
    first = order[np.concatenate([[True], items[order][1:] != items[order][:-1]])]
    owner = np.empty(int(item_code.max()) + 1, dtype=np.int64)
    owner[items[first]] = domains[first]
    listed_twice = len(pairs) - len(first)
    if listed_twice:
        logger.info(
            "%d items are listed under several domains; each keeps its most frequent",
            len(np.unique(items[np.concatenate([[False], items[1:] == items[:-1]])])),
        )
    return owner


@dataclass(frozen=True, eq=False)
class ItemCatalog:
    """Every distinct item of the data as a key ``domain::raw_id``, in key order."""

    #: (I,) sorted item keys
    catalog: np.ndarray
    #: (I,) index into ``domains`` of each catalogue item
    catalog_domain: np.ndarray
    #: (E,) catalogue index of every event, in the raw (file) order of the events
    item_index: np.ndarray
    #: names of the domains that own at least one item, sorted
    domains: tuple[str, ...]


def item_catalog(
    item_code: np.ndarray, item_distinct: np.ndarray, event_domains: pd.Series,
    ids_per_domain: bool,
) -> ItemCatalog:
    """The catalogue of the events' items: an item is (raw id, owning domain).

    ``ids_per_domain``: raw ids are only unique within a domain (CDRIB, PeterRec), so equal ids
    of different domains stay different items instead of moving to the most frequent domain.
    """
    domain_code, domain_distinct = factorize(event_domains)
    alphabetical = np.argsort(domain_distinct, kind="stable")
    domain_code = ranks(alphabetical)[domain_code]
    domain_names = domain_distinct[alphabetical]
    if not ids_per_domain:
        domain_code = _owning_domains(item_code, domain_code, len(domain_names))[item_code]
    identity_code, identities = pd.factorize(item_code * len(domain_names) + domain_code)
    identity_item, identity_domain = np.divmod(np.asarray(identities), len(domain_names))
    keys = np.asarray([
        f"{domain_names[d]}{DOMAIN_SEPARATOR}{item_distinct[i]}"
        for i, d in zip(identity_item.tolist(), identity_domain.tolist(), strict=True)
    ], dtype=str)
    key_order = np.argsort(keys, kind="stable")
    # only domains that own an item remain (an item's listings elsewhere moved to its owner)
    used = np.unique(identity_domain)
    return ItemCatalog(
        catalog=keys[key_order],
        catalog_domain=np.searchsorted(used, identity_domain[key_order]).astype(np.int64),
        item_index=ranks(key_order)[identity_code],
        domains=tuple(domain_names[used].tolist()),
    )
