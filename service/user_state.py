"""Per-user state, free of HTTP: append events, read, delete (docs/service.md#user-state).

A user's record holds the step graph's state, every graph output after the newest event (so a
read runs no model), the latest ``max_len`` events (item keys and timestamps: to exclude seen
items, and to rebuild the state for another bundle) and the bundle it was computed with. A record
of another bundle is rebuilt from its stored events before it is used (a reload never mixes
versions); for a history longer than ``max_len`` the rebuilt mean readouts then cover only the
stored window (docs/service.md#the-window).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from uservec.contract.events import event_order
from uservec.contract.ids import UNK_ID, item_key
from uservec.service.cache import deserialize, serialize
from uservec.service.engine import Bundle, DomainRequired, Outputs
from uservec.service.errors import InvalidRequest, ServiceError
from uservec.service.schemas import Event
from uservec.service.state_store import StateStore
from uservec.service.step import StepGraph, encode_window, load_step

logger = logging.getLogger(__name__)

_STATE = "__state__"
#: runs blocking work off the event loop (Runtime.in_thread)
InThread = Callable[..., Awaitable[Any]]
#: compare-and-swap attempts of one append before it gives up with 409 ``state_conflict``
ATTEMPTS = 8


class UserNotFound(ServiceError):
    code = "user_not_found"


class OutOfOrder(ServiceError):
    code = "out_of_order"


@dataclass(frozen=True)
class UserRecord:
    """What is stored per user (see the module docstring)."""

    bundle: str  # Bundle.cache_namespace it was computed with
    keys: tuple[str, ...]  # item keys of the latest max_len events, oldest first
    timestamps: tuple[float | None, ...]
    total: int  # events appended since the record began
    known: int  # of which the vocabulary knew
    state: np.ndarray  # (S,) float32; empty without a step graph
    outputs: Outputs

    @property
    def last_timestamp(self) -> float | None:
        return next((ts for ts in reversed(self.timestamps) if ts is not None), None)


def encode_record(record: UserRecord) -> bytes:
    header = json.dumps({"bundle": record.bundle, "keys": record.keys,
                         "timestamps": record.timestamps, "total": record.total,
                         "known": record.known}).encode()
    arrays = {_STATE: record.state, **record.outputs}
    return struct.pack("<I", len(header)) + header + serialize(arrays)


def decode_record(payload: bytes) -> UserRecord:
    (size,) = struct.unpack_from("<I", payload)
    header = json.loads(payload[4 : 4 + size])
    arrays = deserialize(payload[4 + size :])
    state = arrays.pop(_STATE)
    return UserRecord(header["bundle"], tuple(header["keys"]), tuple(header["timestamps"]),
                      int(header["total"]), int(header["known"]), state, arrays)


@dataclass(frozen=True)
class Appended:
    record: UserRecord
    unknown_items: tuple[str, ...]
    accepted: int


@dataclass(frozen=True)
class _NewEvents:
    keys: list[str]
    timestamps: list[float | None]
    ids: np.ndarray
    unknown: tuple[str, ...]


class UserStates:
    """Records in a :class:`StateStore`, advanced with the current bundle's step graph."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._graphs: dict[str, StepGraph | None] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def serialized(self, user_id: str) -> AsyncIterator[None]:
        """One append per user at a time in this process: concurrent appends queue here instead
        of failing each other's swaps; the swap still guards against other replicas."""
        lock, users = self._locks.get(user_id, (asyncio.Lock(), 0))
        self._locks[user_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[user_id]
            if users == 1:
                del self._locks[user_id]
            else:
                self._locks[user_id] = (lock, users - 1)

    def graph(self, bundle: Bundle) -> StepGraph | None:
        """The bundle's step graph, loaded once per bundle (the newest bundle's only)."""
        if bundle.cache_namespace not in self._graphs:
            self._graphs = {bundle.cache_namespace: load_step(bundle)}
        return self._graphs[bundle.cache_namespace]

    def advance(self, bundle: Bundle, record: UserRecord | None, new: _NewEvents) -> UserRecord:
        """The record after ``new`` (blocking: onnxruntime)."""
        keys = [*(record.keys if record else ()), *new.keys][-bundle.max_len:]
        stamps = [*(record.timestamps if record else ()), *new.timestamps][-bundle.max_len:]
        total = (record.total if record else 0) + len(new.keys)
        known = (record.known if record else 0) + int(np.count_nonzero(new.ids != UNK_ID))
        graph = self.graph(bundle)
        if graph is None:
            outputs = encode_window(bundle, bundle.vocab.encode(keys))
            return UserRecord(bundle.cache_namespace, tuple(keys), tuple(stamps), total, known,
                              np.zeros(0, dtype=np.float32), outputs)
        state, stepped = graph.advance(record.state if record else graph.empty(), new.ids)
        outputs = stepped if stepped is not None else record.outputs if record else {}
        return UserRecord(bundle.cache_namespace, tuple(keys), tuple(stamps), total, known, state,
                          outputs)

    def rebuild(self, bundle: Bundle, record: UserRecord) -> UserRecord:
        """``record`` recomputed with ``bundle`` from its stored events (blocking)."""
        ids = bundle.vocab.encode(list(record.keys))
        fresh = self.advance(bundle, None, _NewEvents(list(record.keys),
                                                       list(record.timestamps), ids, ()))
        return UserRecord(fresh.bundle, fresh.keys, fresh.timestamps, record.total,
                          record.known, fresh.state, fresh.outputs)


def prepare_events(bundle: Bundle, events: Sequence[Event]) -> _NewEvents:
    """Order one append's events like the training data and map them to ids."""
    try:
        domains = [bundle.domain_of(event, pos) for pos, event in enumerate(events)]
    except DomainRequired as exc:
        raise InvalidRequest(
            f"event {exc.position}: item {exc.item_id!r} is in "
            f"{'several' if exc.candidates else 'none'} of this bundle's domains; say which "
            "with 'domain'", code="domain_required",
            details={"event": exc.position, "item_id": exc.item_id, "domains": exc.candidates},
        ) from exc
    order = event_order([e.item_id for e in events], [e.timestamp for e in events])
    keys = [item_key(events[pos].item_id, domains[pos]) for pos in order]
    ids = bundle.vocab.encode(keys)
    unknown = dict.fromkeys(events[pos].item_id for row, pos in enumerate(order)
                            if ids[row] == UNK_ID)
    return _NewEvents(keys, [events[pos].timestamp for pos in order], ids, tuple(unknown))


def check_order(record: UserRecord | None, new: _NewEvents) -> None:
    """409 ``out_of_order`` for an event older than the user's newest stored event."""
    last = record.last_timestamp if record else None
    stamps = [ts for ts in new.timestamps if ts is not None]
    if last is not None and stamps and min(stamps) < last:
        raise OutOfOrder(
            f"an event is older ({min(stamps)}) than the user's newest event ({last}); the state "
            "only moves forward: delete the user and append the whole history again",
            details={"last_timestamp": last, "oldest_sent": min(stamps)},
        )


#: appends of at most this many events run the step graph on the event loop: ~0.1 ms per event,
#: less than the hop to the thread pool costs; longer appends and rebuilds go to the pool
INLINE_EVENTS = 4


async def _current(states: UserStates, bundle: Bundle, record: UserRecord,
                   in_thread: InThread) -> UserRecord:
    """``record`` as ``bundle`` computes it: rebuilt when it was computed with another bundle."""
    if record.bundle == bundle.cache_namespace:
        return record
    logger.debug("rebuilding a user record of bundle %s for %s", record.bundle,
                 bundle.cache_namespace)
    rebuilt: UserRecord = await in_thread(states.rebuild, bundle, record)
    return rebuilt


async def append_events(states: UserStates, bundle: Bundle, user_id: str,
                        events: Sequence[Event], in_thread: InThread) -> Appended:
    """Append ``events`` to ``user_id``'s record atomically (compare-and-swap, retried)."""
    new = prepare_events(bundle, events)
    async with states.serialized(user_id):
        for attempt in range(ATTEMPTS):
            if attempt:  # another replica won: back off a little, with jitter
                await asyncio.sleep(random.uniform(0, 0.002 * attempt))
            appended = await _try_append(states, bundle, user_id, new, in_thread)
            if appended is not None:
                return appended
    raise ServiceError(f"user {user_id!r} changed {ATTEMPTS} times while this append ran; retry",
                       code="state_conflict")


async def _try_append(states: UserStates, bundle: Bundle, user_id: str, new: _NewEvents,
                      in_thread: InThread) -> Appended | None:
    """One read-compute-swap; None when another writer changed the record in between."""
    stored = await states.store.load(user_id)
    record = decode_record(stored.payload) if stored else None
    check_order(record, new)
    if record is not None:
        record = await _current(states, bundle, record, in_thread)
    if len(new.ids) <= INLINE_EVENTS and states.graph(bundle) is not None:
        updated = states.advance(bundle, record, new)
    else:
        updated = await in_thread(states.advance, bundle, record, new)
    if await states.store.swap(user_id, stored.token if stored else None,
                               encode_record(updated)):
        return Appended(updated, new.unknown, len(new.keys))
    return None


async def read_user(states: UserStates, bundle: Bundle, user_id: str,
                    in_thread: InThread) -> UserRecord:
    """The user's record for ``bundle`` (404 ``user_not_found``); a record of another bundle is
    rebuilt and written back (unless an append replaced it meanwhile)."""
    stored = await states.store.load(user_id)
    if stored is None:
        raise UserNotFound(f"no state for user {user_id!r}", details={"user_id": user_id})
    record = decode_record(stored.payload)
    current = await _current(states, bundle, record, in_thread)
    if current is not record:
        await states.store.swap(user_id, stored.token, encode_record(current))
    return current


async def delete_user(states: UserStates, user_id: str) -> None:
    """Remove the user's record, the only thing derived from their appended events (404 if
    there is none)."""
    if not await states.store.delete(user_id):
        raise UserNotFound(f"no state for user {user_id!r}", details={"user_id": user_id})
