"""One user's raw events -> the id window the model reads: the rule every caller must share.

The service turns a request's events into model inputs and ``uservec embed`` turns a user's rows of
an event file into them; when both call :func:`encode_events`, a vector from a file equals the
vector ``POST /embed`` returns for the same events. The rule, as training prepares sequences:

1. order: by ``(timestamp, item_id)`` when every event has a timestamp (a stable sort, so the given
   order breaks ties), otherwise the given order;
2. namespace each raw item id by its domain; an event without one belongs to the vocabulary's
   only domain, else to the one domain its raw id exists in (:func:`resolve_domain`; the service
   answers 422 ``domain_required`` when that is not exactly one, ``uservec embed`` counts the event
   as unknown);
3. keep the latest ``max_len`` events and map them through the vocabulary (unknown items are
   ``UNK_ID``, not an error).

Left padding to the graph's length is :mod:`uservec.contract.sequences`' job, per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from uservec.contract.ids import DEFAULT_DOMAIN, UNK_ID, item_key
from uservec.contract.vocab import Vocabulary


@dataclass(frozen=True)
class EncodedEvents:
    """What the model reads of one user's events, and what those events were."""

    ids: np.ndarray  # (n,) int64, the latest n <= max_len events, oldest first
    unknown_items: tuple[str, ...]  # raw ids among those n that map to UNK, first seen first
    seen_keys: frozenset[str]  # item keys of every event given (a recommender excludes them)

    @property
    def events_used(self) -> int:
        return int(self.ids.size)


def default_domain(vocab: Vocabulary) -> str:
    """Events without a domain belong to the vocabulary's only domain when it has one."""
    domains = vocab.domains()
    return domains[0] if len(domains) == 1 else DEFAULT_DOMAIN


def resolve_domain(item_id: str, vocab: Vocabulary, domains: Sequence[str]) -> str | None:
    """The domain of an event sent without one, or None when it cannot be told.

    ``domains`` are the vocabulary's domains when it has several (empty for one domain): then the
    event belongs to the only domain where its raw id exists. One vocabulary lookup per domain,
    so no per-item table is held in memory.
    """
    if not domains:
        return default_domain(vocab)
    found = [name for name in domains if item_key(item_id, name) in vocab]
    return found[0] if len(found) == 1 else None


def event_order(item_ids: Sequence[str], timestamps: Sequence[float | None]) -> list[int]:
    """Positions of the events in model order (oldest first).

    By ``(timestamp, item_id)`` when every event has a timestamp, as training orders a user's
    sequence; the sort is stable, so equal keys keep the given order. With a timestamp missing
    anywhere the given order is the only order there is.
    """
    positions = list(range(len(item_ids)))
    if positions and all(stamp is not None for stamp in timestamps):
        positions.sort(key=lambda pos: (timestamps[pos], item_ids[pos]))
    return positions


def encode_events(
    item_ids: Sequence[str],
    event_domains: Sequence[str | None],
    timestamps: Sequence[float | None],
    vocab: Vocabulary,
    max_len: int,
    domains: Sequence[str],
) -> EncodedEvents:
    """Order one user's events, keep the latest ``max_len``, map them to vocabulary ids.

    The three sequences are parallel, one entry per event. An empty or missing domain is resolved
    by :func:`resolve_domain` over ``domains``; one that cannot be resolved makes the event
    unknown. ValueError for a domain holding ':'.
    """
    if not len(item_ids) == len(event_domains) == len(timestamps):
        raise ValueError(f"one domain and one timestamp per event: {len(item_ids)} items, "
                         f"{len(event_domains)} domains, {len(timestamps)} timestamps")
    order = event_order(item_ids, timestamps)
    resolved = [event_domains[pos] or resolve_domain(item_ids[pos], vocab, domains)
                or DEFAULT_DOMAIN for pos in order]
    keys = [item_key(item_ids[pos], domain) for pos, domain in zip(order, resolved, strict=True)]
    window = keys[-max_len:] if max_len > 0 else []
    ids = vocab.encode(window)
    used = order[len(order) - len(window):]
    unknown = dict.fromkeys(item_ids[pos] for pos, index in zip(used, ids.tolist(), strict=True)
                            if index == UNK_ID)
    return EncodedEvents(ids=ids, unknown_items=tuple(unknown), seen_keys=frozenset(keys))
