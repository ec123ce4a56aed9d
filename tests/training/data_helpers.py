"""Tiny PreparedDataset builders for the protocol, metric and baseline tests.

They follow docs/protocols.md#common-rules (users sorted by id, sequences ordered by (timestamp,
item id), an item listed under several domains belongs to its most frequent one), so tests do not
depend on the loaders.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from uservec.contract.ids import item_key
from uservec.contract.vocab import Vocabulary
from uservec.training.data.dataset import PreparedDataset


def _sort_key(values: pd.Series) -> pd.Series:
    """Numeric order when every value is an integer, else string order."""
    as_str = values.astype(str)
    if as_str.str.fullmatch(r"-?\d+").all():
        return as_str.astype(np.int64)
    return as_str


def build_dataset(
    user_ids: Sequence,
    item_ids: Sequence,
    domains: Sequence[str] | None = None,
    timestamps: Sequence[int] | None = None,
    users: pd.DataFrame | None = None,
    event_split: Sequence[int] | None = None,
    name: str = "tiny",
) -> PreparedDataset:
    """PreparedDataset from per-event columns; ``users`` is indexed by raw user id (as str)."""
    frame = pd.DataFrame({
        "user": pd.Series(user_ids).astype(str),
        "item": pd.Series(item_ids).astype(str),
        "domain": pd.Series(domains if domains is not None else ["default"] * len(user_ids)),
        "ts": np.asarray(
            timestamps if timestamps is not None else np.arange(len(user_ids)), dtype=np.int64
        ),
        "split": np.asarray(
            event_split if event_split is not None else np.full(len(user_ids), -1), dtype=np.int8
        ),
    })
    # Most frequent domain per raw item (ties: alphabetically first).
    counts = frame.groupby(["item", "domain"]).size().reset_index(name="n")
    counts = counts.sort_values(["item", "n", "domain"], ascending=[True, False, True])
    owner = counts.drop_duplicates("item").set_index("item")["domain"]
    frame["domain"] = frame["item"].map(owner)
    frame["key"] = [item_key(i, d) for i, d in zip(frame["item"], frame["domain"], strict=True)]
    frame["user_key"] = _sort_key(frame["user"])
    frame["item_key"] = _sort_key(frame["item"])
    frame = frame.sort_values(["user_key", "ts", "item_key"], kind="stable").reset_index(drop=True)

    user_order = frame.drop_duplicates("user")["user"].to_numpy()
    per_user = frame.groupby("user", sort=False).size().reindex(user_order).to_numpy()
    offsets = np.concatenate([[0], np.cumsum(per_user)]).astype(np.int64)

    catalog = np.array(sorted(frame["key"].unique()))
    item_index = np.searchsorted(catalog, frame["key"].to_numpy()).astype(np.int64)
    domain_names = tuple(sorted(frame["domain"].unique()))
    catalog_domain = np.array(
        [domain_names.index(key.split("::", 1)[0]) for key in catalog], dtype=np.int64
    )
    vocab = Vocabulary.from_counts(frame["key"].value_counts().to_dict())
    user_frame = None
    if users is not None:
        user_frame = users.copy()
        user_frame.index = user_frame.index.astype(str)
        user_frame = user_frame.reindex(user_order).reset_index(drop=True)
    return PreparedDataset(
        name=name,
        vocab=vocab,
        user_ids=user_order.astype(str),
        offsets=offsets,
        items=vocab.encode(frame["key"]),
        item_index=item_index,
        catalog=catalog,
        catalog_domain=catalog_domain,
        timestamps=frame["ts"].to_numpy(),
        domains=domain_names,
        event_domain=catalog_domain[item_index],
        users=user_frame,
        event_split=None if event_split is None else frame["split"].to_numpy(),
    )


def random_cross_domain(
    num_users: int = 60,
    items_per_domain: int = 12,
    seed: int = 0,
    domains: tuple[str, ...] = ("A", "B", "T"),
) -> PreparedDataset:
    """Seeded multi-domain data where a user's source taste predicts their target items."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[int, str, str, int]] = []
    for user in range(num_users):
        taste = rng.integers(0, 3)
        clock = 0
        for domain in domains:
            count = rng.integers(1, 9)
            for _ in range(count):
                pool = items_per_domain // 3
                item = taste * pool + rng.integers(0, pool) if rng.random() < 0.7 else (
                    rng.integers(0, items_per_domain)
                )
                rows.append((user + 1, f"{domain.lower()}{item}", domain, clock))
                clock += int(rng.integers(0, 3))
    users, items, doms, ts = zip(*rows, strict=True)
    return build_dataset(users, items, doms, ts, name="synthetic-cd")


def labelled_dataset(num_users: int = 60, seed: int = 0):
    """Users whose label decides which half of the items they mostly watch."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(["x", "y", "z"], num_users, p=[0.5, 0.3, 0.2])
    offset = {"x": 0, "y": 10, "z": 20}
    events = []
    for user, label in enumerate(labels, start=1):
        for _ in range(8):
            on_topic = rng.random() < 0.8
            item = offset[label] + rng.integers(0, 10) if on_topic else rng.integers(0, 30)
            events.append((user, int(item)))
    users, items = zip(*events, strict=True)
    frame = pd.DataFrame({"kind": labels}, index=np.arange(1, num_users + 1))
    return build_dataset(users, items, users=frame)
