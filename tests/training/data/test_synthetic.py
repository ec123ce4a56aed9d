import itertools
from collections import Counter, defaultdict

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from uservec.training.data.prepare import prepare
from uservec.training.data.synthetic import OCCUPATIONS, generate_synthetic


@pytest.fixture(scope="module")
def data():
    return prepare(generate_synthetic(n_users=300, n_items=120, n_domains=2, seed=0))


def user_item_matrix(data, domain: int | None = None) -> np.ndarray:
    """(U, I) binary: whether user u has item i (optionally only events of one domain)."""
    owner = np.repeat(np.arange(data.num_users), data.lengths())
    keep = np.ones(data.num_events, bool) if domain is None else data.event_domain == domain
    matrix = np.zeros((data.num_users, len(data.catalog)))
    matrix[owner[keep], data.item_index[keep]] = 1.0
    return matrix


def test_same_seed_same_data_other_seed_other_data():
    first, again = generate_synthetic(40, 50, 3, seed=7), generate_synthetic(40, 50, 3, seed=7)
    pd.testing.assert_frame_equal(first.interactions, again.interactions)
    pd.testing.assert_frame_equal(first.users, again.users)
    other = generate_synthetic(40, 50, 3, seed=8)
    assert not first.interactions.equals(other.interactions)


def test_shape_of_the_generated_data(data):
    assert data.num_users == 300 and len(data.catalog) == 120
    assert data.lengths().min() >= 10 and data.lengths().max() <= 60
    assert data.domains == ("domain0", "domain1")
    users = data.users
    assert set(users["gender"]) == {"M", "F"}
    assert users["age"].between(15, 70).all() and users["age"].dtype == np.int64
    assert set(users["occupation"]) <= set(OCCUPATIONS)
    both = [len(set(data.event_domain[data.offsets[u] : data.offsets[u + 1]])) == 2
            for u in range(data.num_users)]
    assert np.mean(both) > 0.9  # tastes show in every domain


@pytest.mark.parametrize(("attribute", "margin"), [("gender", 0.08), ("occupation", 0.08)])
def test_attributes_are_predictable_from_behaviour(data, attribute, margin):
    features, labels = user_item_matrix(data), data.users[attribute].to_numpy()
    train, test = slice(0, 200), slice(200, None)
    model = LogisticRegression(max_iter=500).fit(features[train], labels[train])
    accuracy = np.mean(model.predict(features[test]) == labels[test])
    majority = Counter(labels[train]).most_common(1)[0][0]
    assert accuracy > np.mean(labels[test] == majority) + margin


def test_age_is_predictable_from_behaviour(data):
    older = (data.users["age"] > data.users["age"].median()).to_numpy()
    features = user_item_matrix(data)
    model = LogisticRegression(max_iter=500).fit(features[:200], older[:200])
    assert np.mean(model.predict(features[200:]) == older[200:]) > 0.62


def test_previous_item_predicts_the_next_far_better_than_popularity(data):
    successors: dict[int, Counter] = defaultdict(Counter)
    popularity: Counter = Counter()
    for user in range(150):
        seq = data.item_index[data.offsets[user] : data.offsets[user + 1]].tolist()
        popularity.update(seq)
        for previous, nxt in itertools.pairwise(seq):
            successors[previous][nxt] += 1
    most_popular = popularity.most_common(1)[0][0]
    bigram_hits = popularity_hits = total = 0
    for user in range(150, data.num_users):
        seq = data.item_index[data.offsets[user] : data.offsets[user + 1]].tolist()
        for previous, nxt in itertools.pairwise(seq):
            total += 1
            popularity_hits += nxt == most_popular
            bigram_hits += bool(successors[previous]) and (
                successors[previous].most_common(1)[0][0] == nxt
            )
    assert bigram_hits / total > 0.3 > 0.1 > popularity_hits / total


def test_one_domain_predicts_the_other(data):
    source, target = user_item_matrix(data, 0), user_item_matrix(data, 1)
    train, test = slice(0, 200), slice(200, None)
    cooc = source[train].T @ target[train] / np.maximum(source[train].sum(0), 1)[:, None]
    scores = source[test] @ cooc
    popularity = np.broadcast_to(target[train].sum(0), scores.shape)

    def hit_rate(score: np.ndarray) -> float:
        top = np.argsort(-score, axis=1, kind="stable")[:, :10]
        return float(np.mean(np.take_along_axis(target[test], top, axis=1).mean(1)))

    assert hit_rate(scores) > 1.3 * hit_rate(popularity)
