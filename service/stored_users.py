"""``user_id`` instead of ``events`` on /embed, /predict-profile and /recommend.

A user sent without ``events`` is read from the user-state store (docs/service.md#user-state):
its record already holds every graph output after its newest event, so such a user costs one
store read and no model run. The record's stored window stands in for the request's events:
``events_used``, ``known_events`` and ``unknown_items`` count it, and ``exclude_seen`` excludes
its items.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from uservec.contract.ids import UNK_ID, split_item_key
from uservec.service.engine import Bundle, PreparedUser, RecommendHead
from uservec.service.errors import InvalidRequest
from uservec.service.schemas import UserEvents
from uservec.service.user_state import InThread, UserRecord, UserStates, read_user


def prepared_from_record(bundle: Bundle, record: UserRecord,
                         head: RecommendHead | None = None) -> PreparedUser:
    """What the model read for a stored user, as :meth:`Bundle.prepare` describes a request's."""
    ids = bundle.vocab.encode(list(record.keys))
    keys = np.asarray(record.keys, dtype=object)
    if head is not None:
        rows = np.flatnonzero(head.reads[ids] | (ids == UNK_ID))
        keys, ids = keys[rows], ids[rows]
    unknown = dict.fromkeys(split_item_key(str(key))[1] for key, i in zip(keys, ids, strict=True)
                            if i == UNK_ID)
    read = ids[ids != UNK_ID]
    return PreparedUser(ids=read, unknown_items=tuple(unknown),
                        seen_keys=frozenset(record.keys), known_events=int(read.size),
                        outputs=record.outputs)


async def stored_users(
    states: UserStates, bundle: Bundle, users: Sequence[UserEvents], in_thread: InThread,
    head: RecommendHead | None = None,
) -> dict[int, PreparedUser]:
    """Per position of a user sent without events, its stored record as a prepared user."""
    found: dict[int, PreparedUser] = {}
    for position, user in enumerate(users):
        if user.events is not None:
            continue
        if user.user_id is None:
            message = "send the user's events, or the user_id of a stored user"
            raise InvalidRequest(f"user {position}: {message}", details=[
                {"loc": ["body", "users", position, "events"], "msg": message,
                 "type": "missing"}])
        record = await read_user(states, bundle, user.user_id, in_thread)
        found[position] = prepared_from_record(bundle, record, head)
    return found
