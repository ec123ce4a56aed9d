"""Next-item recommendations in the user's own domain (the pretrained next-item head).

The cross-domain heads of ``/recommend`` answer cold start: they read only other domains' events.
A user who already has history in the requested domain is better served by what the encoder was
pretrained for, next-item prediction: scores = ``[user_vector, 1] @ next_item.T`` over the
domain's items (the bundle's ``next_item.npy``, row = vocabulary id, bias last), the user's own
items excluded like any other exclusion. With user state the vector is the one after the newest
appended event, so the ranking is fresh after every append.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from uservec.contract.ids import NUM_RESERVED, split_item_key
from uservec.contract.vocab import Vocabulary
from uservec.service.engine import USER_VECTOR, Bundle, PreparedUser
from uservec.service.metrics import Timings
from uservec.service.retrieval import Scored
from uservec.service.runtime import Runtime
from uservec.service.schemas import UserEvents

#: the ``answered_by`` of a ranking from this head
NEXT_ITEM = "next_item"


@dataclass(frozen=True, eq=False)
class NextItemHead:
    """The head's rows of one bundle, and per domain the vocabulary ids it ranks."""

    rows: np.ndarray  # (V, D + 1) float32
    vocab: Vocabulary
    domain_ids: np.ndarray  # (V,) domain index of every vocabulary id
    domains: tuple[str, ...]

    def ids_of(self, domain: str) -> np.ndarray:
        """Real vocabulary ids of ``domain`` (empty for a domain the vocabulary lacks)."""
        if domain not in self.domains:
            return np.zeros(0, dtype=np.int64)
        ids = np.flatnonzero(self.domain_ids == self.domains.index(domain))
        return ids[ids >= NUM_RESERVED]

    def has_history(self, prepared: PreparedUser, domain: str) -> bool:
        """Does the user have a known item of ``domain`` among the events it sent or stored?"""
        return any(split_item_key(key)[0] == domain and key in self.vocab
                   for key in prepared.seen_keys)

    def rank(self, vector: np.ndarray, domain: str, excluded: Collection[str],
             k: int) -> list[Scored]:
        """Top ``k`` item keys of ``domain`` by score, best first, ``excluded`` keys skipped;
        ties by vocabulary id (the P1 rule)."""
        ids = self.ids_of(domain)
        query = np.append(np.asarray(vector, dtype=np.float32), np.float32(1.0))
        scores = self.rows[ids] @ query  # (N,)
        order = np.lexsort((ids, -scores))
        found: list[Scored] = []
        for row in order:
            key = self.vocab.key_of(int(ids[row]))
            if key not in excluded:
                found.append((key, float(scores[row])))
                if len(found) == k:
                    break
        return found


_HEADS: dict[str, NextItemHead | None] = {}


def next_item_head(bundle: Bundle) -> NextItemHead | None:
    """The bundle's next-item head (loaded once per bundle), or None when it has none."""
    if bundle.cache_namespace not in _HEADS:
        name = bundle.manifest.model.next_item_file
        head = None
        if name is not None:
            rows = np.load(bundle.path / name)
            head = NextItemHead(rows, bundle.vocab, bundle.vocab.domain_ids(),
                                tuple(bundle.vocab.domains()))
        _HEADS.clear()  # only the newest bundle's
        _HEADS[bundle.cache_namespace] = head
    return _HEADS[bundle.cache_namespace]


@dataclass(frozen=True)
class OwnDomain:
    """A user answered by the next-item head: what it read (whole window), and its ranking."""

    prepared: PreparedUser
    items: list[Scored]
    cached: bool


async def own_domain_rankings(
    runtime: Runtime, bundle: Bundle, domain: str, users: Sequence[UserEvents],
    prepared: Sequence[PreparedUser], excluded: Sequence[set[str]], k: int, timings: Timings,
) -> dict[int, OwnDomain]:
    """Per position of a user with known history in ``domain``: its next-item ranking there
    (empty when the bundle has no next-item head)."""
    head = next_item_head(bundle)
    if head is None:
        return {}
    own = [pos for pos, prep in enumerate(prepared) if head.has_history(prep, domain)]
    full = [prepared[pos] if prepared[pos].outputs is not None
            else bundle.prepare(users[pos].events or ()) for pos in own]
    encoded = await runtime.encode(bundle, full, timings, (USER_VECTOR,))
    return {pos: OwnDomain(prep, head.rank(enc.outputs[USER_VECTOR], domain, excluded[pos], k),
                           enc.cached)
            for pos, prep, enc in zip(own, full, encoded, strict=True)}
