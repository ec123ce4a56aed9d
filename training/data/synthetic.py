"""Seeded synthetic behaviour data with real structure, for tests and the demo.

Random ids would let every model tie with popularity and every profile classifier tie with the
majority class, so tests could not tell a working pipeline from a broken one. Here hidden tastes
drive behaviour in every domain and the profile attributes, and sequences have order:

- ``K`` topics. Every topic has items in every domain; within a topic, popularity is Zipf-like.
- Each user has a taste: a peaked Dirichlet mixture over topics, shared by all domains (so the
  source domains predict the target domain).
- Gender, age and occupation are noisy functions of the taste (predictable from behaviour).
- A sequence is a topic-persistent walk: the next item is often the *successor* of the previous
  one (each topic's items form a fixed ring), else a popular item of the same topic, else of a
  newly drawn topic. A next-item model can learn the successors; popularity cannot.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from uservec.training.data.loaders import LOADER_VERSION, RawData

logger = logging.getLogger(__name__)

DEFAULT_TOPICS = 8
OCCUPATIONS = ("artist", "engineer", "retired", "student", "teacher")
MIN_EVENTS, MAX_EVENTS = 10, 60
#: probabilities of the walk's moves: ring successor, same topic, (rest) new topic
P_SUCCESSOR, P_SAME_TOPIC = 0.5, 0.3
_EPOCH = 1_577_836_800  # 2020-01-01 UTC


def domain_names(n_domains: int) -> tuple[str, ...]:
    """Names of the generated domains: ``domain0``, ``domain1``, ..."""
    return tuple(f"domain{d}" for d in range(n_domains))


def _standardise(values: np.ndarray) -> np.ndarray:
    """Zero median, unit spread per column, so thresholds give balanced classes at any size."""
    return (values - np.median(values, axis=0)) / (values.std(axis=0) + 1e-9)


def _user_attributes(
    taste: np.ndarray, rng: np.random.Generator, user_ids: list[str]
) -> pd.DataFrame:
    """Gender, age and occupation as noisy functions of the taste mixture."""
    n_users, n_topics = taste.shape
    gender_score = _standardise(taste @ rng.normal(size=n_topics))
    p_male = 1.0 / (1.0 + np.exp(-2.5 * gender_score))
    gender = np.where(rng.random(n_users) < p_male, "M", "F")
    age_score = _standardise(taste @ rng.normal(size=n_topics))
    age = np.clip(np.rint(38 + 12 * age_score + rng.normal(0, 5, n_users)), 15, 70)
    occupation_score = _standardise(taste @ rng.normal(size=(n_topics, len(OCCUPATIONS))))
    occupation = np.argmax(occupation_score + 0.7 * rng.gumbel(size=occupation_score.shape), axis=1)
    return pd.DataFrame(
        {
            "gender": gender,
            "age": age.astype(np.int64),
            "occupation": np.asarray(OCCUPATIONS)[occupation],
        },
        index=pd.Index(user_ids, name="user_id"),
    )


def _item_structure(
    n_items: int, n_domains: int, n_topics: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[np.ndarray], np.ndarray]:
    """(topic, domain, items per topic, popularity cdf per topic, ring successor) of the items."""
    topic = rng.permutation(np.arange(n_items) % n_topics)
    domain = np.empty(n_items, dtype=np.int64)
    successor = np.empty(n_items, dtype=np.int64)
    members: list[np.ndarray] = []
    cdfs: list[np.ndarray] = []
    for k in range(n_topics):
        items = rng.permutation(np.flatnonzero(topic == k))
        domain[items] = np.arange(len(items)) % n_domains  # every topic in every domain
        successor[items] = np.roll(items, -1)
        weights = 1.0 / (1.0 + rng.permutation(len(items))) ** 0.8
        members.append(items)
        cdfs.append(np.cumsum(weights) / weights.sum())
    return topic, domain, members, cdfs, successor


def _walk(
    length: int,
    taste_cdf: np.ndarray,
    members: list[np.ndarray],
    cdfs: list[np.ndarray],
    topic_of: np.ndarray,
    successor: np.ndarray,
    rng: np.random.Generator,
) -> list[int]:
    """One user's item sequence: the topic-persistent walk described in the module docstring."""
    draws = rng.random((length, 3))

    def popular_item(topic: int, u: float) -> int:
        position = min(int(np.searchsorted(cdfs[topic], u)), len(members[topic]) - 1)
        return int(members[topic][position])

    topic = int(min(np.searchsorted(taste_cdf, draws[0, 0]), len(taste_cdf) - 1))
    sequence = [popular_item(topic, draws[0, 1])]
    for move, u_topic, u_item in draws[1:]:
        previous = sequence[-1]
        if move < P_SUCCESSOR:
            item = int(successor[previous])
        elif move < P_SUCCESSOR + P_SAME_TOPIC:
            item = popular_item(int(topic_of[previous]), u_item)
        else:
            topic = int(min(np.searchsorted(taste_cdf, u_topic), len(taste_cdf) - 1))
            item = popular_item(topic, u_item)
        sequence.append(item)
    return sequence


def generate_synthetic(
    n_users: int = 600,
    n_items: int = 300,
    n_domains: int = 2,
    seed: int = 0,
    n_topics: int = DEFAULT_TOPICS,
    basket: int = 0,
) -> RawData:
    """A deterministic dataset (same arguments -> identical events) with learnable structure.

    Users ``"1".."n_users"`` have 10-60 events each; items ``"0".."n_items-1"`` are spread over
    domains ``domain0..``; the users table has ``gender`` (M/F), ``age`` (15..70), ``occupation``.
    With ``basket`` > 0 every ``basket`` consecutive events of a user share one timestamp (a
    basket, or a session logged per day): prepared in (timestamp, item id) order, the walk's
    order inside a basket is lost and only the tie-break remains.
    """
    if n_users < 1 or n_domains < 1 or n_items < n_domains:
        raise ValueError(
            f"need n_users >= 1 and n_items >= n_domains >= 1, got {n_users=}, {n_items=}, "
            f"{n_domains=}"
        )
    requested_topics = n_topics
    n_topics = max(1, min(n_topics, n_items // n_domains))
    rng = np.random.default_rng(seed)
    topic_of, item_domain, members, cdfs, successor = _item_structure(
        n_items, n_domains, n_topics, rng
    )
    taste = rng.dirichlet(np.full(n_topics, 0.3), size=n_users)
    user_ids = [str(u + 1) for u in range(n_users)]
    users = _user_attributes(taste, rng, user_ids)
    lengths = rng.integers(MIN_EVENTS, MAX_EVENTS + 1, size=n_users)
    sequences = [
        _walk(int(length), np.cumsum(taste[u]), members, cdfs, topic_of, successor, rng)
        for u, length in enumerate(lengths)
    ]
    starts = _EPOCH + rng.integers(0, 365 * 86_400, size=n_users)
    gaps = rng.integers(60, 3 * 86_400, size=int(lengths.sum()))
    user_index = np.repeat(np.arange(n_users), lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    if basket > 0:  # no time passes inside a basket
        position = np.arange(len(gaps)) - np.repeat(offsets[:-1], lengths)
        gaps[position % basket != 0] = 0
    elapsed = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[offsets[:-1]], lengths)
    items = np.concatenate(sequences)
    names = np.asarray(domain_names(n_domains))
    interactions = pd.DataFrame({
        "user_id": pd.Series(np.asarray(user_ids)[user_index], dtype=str),
        "item_id": pd.Series(items.astype(str), dtype=str),
        "timestamp": (starts[user_index] + elapsed).astype(np.int64),
        "domain": pd.Series(names[item_domain[items]], dtype=str),
    })
    settings = {
        "format": "synthetic", "loader_version": LOADER_VERSION,
        "users": n_users, "items": n_items, "domains": n_domains, "seed": seed,
    }
    if requested_topics != DEFAULT_TOPICS:
        settings["topics"] = requested_topics
    if basket > 0:
        settings["basket"] = basket
    logger.info("synthetic data: %d users, %d events", n_users, len(interactions))
    return RawData(interactions, users, (), settings, info={"topics": n_topics})
