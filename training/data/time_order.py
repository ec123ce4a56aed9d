"""Does a dataset have a time order a next-item objective can learn? (``pretrain.objective``)

Next-item pretraining learns what follows what. Data without timestamps (MovieLens-1M as shipped
here, Amazon game/video: file order only) or with many events sharing a timestamp (baskets,
sessions logged per day: ordered only by the item-id tie-break) has no such order to learn, and a
next-item model would learn the file layout or the id order. ``pretrain.objective = "auto"``
picks the order-free ``set`` objective for such data; the report says what was counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from uservec.training.data.dataset import PreparedDataset

#: what the data's timestamps are when the source has none (loaders' ``info.timestamps``)
NO_TIMESTAMPS = ("file order", "position in line")
#: ``auto`` picks ``set`` when at least this share of events tie with their predecessor
TIED_SHARE_FOR_SET = 0.5

Objective = Literal["next_item", "set"]


@dataclass(frozen=True)
class TimeOrder:
    """How ordered a dataset's sequences are."""

    #: events after each user's first
    events: int
    #: of those, events whose timestamp equals the previous event's (same user)
    tied_with_predecessor: int
    #: "unix seconds", "file order", ... (the loader's ``info.timestamps``; "" = unknown)
    timestamps: str

    @property
    def tied_share(self) -> float:
        return self.tied_with_predecessor / self.events if self.events else 0.0

    @property
    def has_timestamps(self) -> bool:
        return self.timestamps not in NO_TIMESTAMPS

    def to_json(self) -> dict[str, Any]:
        return {"events_after_first": self.events,
                "tied_with_predecessor": self.tied_with_predecessor,
                "tied_share": round(self.tied_share, 4), "timestamps": self.timestamps or "given"}


def time_order(dataset: PreparedDataset) -> TimeOrder:
    """Count the events that share a timestamp with the same user's previous event."""
    same_user = np.ones(dataset.num_events, dtype=bool)
    same_user[dataset.offsets[:-1][dataset.lengths() > 0]] = False  # each user's first event
    tied = np.zeros(dataset.num_events, dtype=bool)
    tied[1:] = dataset.timestamps[1:] == dataset.timestamps[:-1]
    info = dataset.settings.get("info", {})
    return TimeOrder(int(same_user.sum()), int((tied & same_user).sum()),
                     str(info.get("timestamps", "")))


def resolve_objective(requested: str, order: TimeOrder) -> tuple[Objective, str]:
    """(objective to train, why): ``auto`` -> ``set`` without a usable order, else next_item."""
    if requested == "next_item":
        return "next_item", "configured"
    if requested == "set":
        return "set", "configured"
    if not order.has_timestamps:
        return "set", f"auto: the source has no timestamps ({order.timestamps})"
    if order.tied_share >= TIED_SHARE_FOR_SET:
        return "set", (f"auto: {order.tied_share:.0%} of events share a timestamp with their "
                       "predecessor")
    return "next_item", (f"auto: timestamps order the events ({order.tied_share:.0%} tied with "
                         "their predecessor)")
