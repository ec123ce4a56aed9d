import numpy as np
import pytest
from data_helpers import build_dataset, random_cross_domain

from uservec.training.data.dataset import SPLIT_TEST, SPLIT_TRAIN, SPLIT_VALID
from uservec.training.evaluation.bags import event_users
from uservec.training.evaluation.cross_domain_split import (
    CrossDomainUsers,
    cross_domain_split,
    cross_domain_users,
    cross_domain_view,
    split_users,
)
from uservec.training.evaluation.errors import InfeasibleEvaluation, LeakError
from uservec.training.evaluation.plan import EvaluationPlan


def test_split_follows_the_protocol_permutation():
    dataset = random_cross_domain(num_users=80)
    split = cross_domain_split(dataset, "T")
    target = dataset.event_domain == dataset.domains.index("T")
    users = event_users(dataset)
    source_count = np.bincount(users[~target], minlength=dataset.num_users)
    target_count = np.bincount(users[target], minlength=dataset.num_users)
    eligible = np.flatnonzero((source_count >= 5) & (target_count >= 1))
    chunks = np.array_split(np.random.default_rng(0).permutation(eligible), 5)
    test = np.concatenate([split.test_users, split.left_out_users])
    assert np.array_equal(np.sort(test), np.sort(chunks[0]))
    assert np.array_equal(split.train_users, np.sort(np.concatenate(chunks[1:])))
    valid = np.sort(np.random.default_rng(0).permutation(split.train_users)[
        : round(0.1 * split.train_users.size)
    ])
    assert split.validation is not None
    validation_users = np.concatenate(
        [split.validation.test_users, split.validation.left_out_users]
    )
    assert np.array_equal(np.sort(validation_users), valid)
    assert np.array_equal(split.validation.train_users, np.setdiff1d(split.train_users, valid))


def test_split_users_helper_matches_the_protocol_sizes():
    train, valid, test = split_users(np.arange(100, 153))
    assert test.size == 11 and train.size == 42 and valid.size == 4
    assert np.intersect1d(train, test).size == 0 and np.isin(valid, train).all()


def test_cold_start_test_users_never_leak_target_events():
    dataset = random_cross_domain(num_users=80)
    split = cross_domain_split(dataset, "T")
    split.check_no_leak(split.training_view())
    with pytest.raises(LeakError):
        split.check_no_leak(np.ones(dataset.num_events, dtype=bool))
    assert split.validation is not None
    split.validation.check_no_leak(split.validation.training_view())
    target = dataset.domains.index("T")
    for user in split.test_users:
        rows = slice(dataset.offsets[user], dataset.offsets[user + 1])
        assert not (split.training_view()[rows] & (dataset.event_domain[rows] == target)).any()


def test_candidates_truth_and_popularity():
    # users 1..6 have 5 source events; T events chosen so that the test user set is known.
    rows = []
    for user in range(1, 7):
        rows += [(user, f"s{user}{j}", "S", j) for j in range(5)]
    target_items = {1: ["t1", "t1"], 2: ["t1", "t2"], 3: ["t2"], 4: ["t3"], 5: ["t9"], 6: ["t4"]}
    for user, items in target_items.items():
        rows += [(user, item, "T", 10 + j) for j, item in enumerate(items)]
    rows.append((7, "t1", "T", 0))  # not eligible: no source events
    users, items, domains, ts = zip(*rows, strict=True)
    dataset = build_dataset(users, items, domains, ts)
    split = cross_domain_split(dataset, "T")
    train_ids = set(dataset.user_ids[split.train_users])
    assert "7" not in train_ids
    expected = sorted({i for u in map(int, train_ids) for i in target_items[u]})
    assert [k.split("::")[1] for k in split.candidate_keys] == expected
    # popularity counts distinct training users, not events (user 1 has t1 twice)
    pop = dict(zip(split.candidate_keys, split.popularity, strict=True))
    assert pop.get("T::t1", 0) == len({"1", "2"} & train_ids)
    for test_user in np.concatenate([split.test_users, split.left_out_users]):
        truth = set(target_items[int(dataset.user_ids[test_user])]) & set(expected)
        if truth:
            got = split.candidate_keys[split.ground_truth(int(test_user))]
            assert {k.split("::")[1] for k in got} == truth
        else:
            assert test_user in split.left_out_users
    assert split.left_out_users.size >= 1  # the user with t9 or t4 only is left out


def test_source_sequence_drops_target_events_and_keeps_time_order():
    rows = []
    for user in range(1, 7):
        rows += [(user, item, "S", ts) for item, ts in zip("abcde", [5, 3, 4, 9, 2], strict=True)]
        rows += [(user, "t1", "T", 1), (user, f"t{user}", "T", 0)]
    users, items, domains, ts = zip(*rows, strict=True)
    dataset = build_dataset(users, items, domains, ts)
    split = cross_domain_split(dataset, "T")
    for user in range(dataset.num_users):
        keys = [dataset.vocab.key_of(int(i)) for i in split.source_sequence(user)]
        assert keys == ["S::e", "S::b", "S::c", "S::a", "S::d"]


def test_training_users_target_matrix_matches_target_items():
    dataset = random_cross_domain(num_users=60)
    split = cross_domain_split(dataset, "T")
    matrix = split.target_matrix(split.train_users).toarray()
    for row, user in enumerate(split.train_users[:10]):
        assert np.flatnonzero(matrix[row]).tolist() == split.target_items(int(user)).tolist()
        sequence = split.source_sequence(int(user))
        keys = [dataset.vocab.key_of(int(i)) for i in sequence]
        assert keys and not any(k.startswith("T::") for k in keys)


def test_pretraining_mask_hides_every_targets_test_events_only():
    dataset = random_cross_domain(num_users=80)
    plan = EvaluationPlan({}, {name: cross_domain_users(dataset, name) for name in ("T", "B")})
    mask = plan.pretraining_mask(dataset)
    hidden = np.zeros(dataset.num_events, dtype=bool)
    for target in ("T", "B"):
        split = cross_domain_split(dataset, target)
        split.check_no_leak(mask)
        hidden |= split.hidden_events()
    assert np.array_equal(mask, ~hidden)


def published_dataset():
    """Two domains with a CDRIB-style split: users 1-4 train in both; 5-6 are cold in G."""
    rows = [
        (1, "g1", "G", SPLIT_TRAIN), (1, "v1", "V", SPLIT_TRAIN),
        (2, "g1", "G", SPLIT_TRAIN), (2, "g2", "G", SPLIT_TRAIN), (2, "v2", "V", SPLIT_TRAIN),
        (3, "g3", "G", SPLIT_TRAIN), (3, "v1", "V", SPLIT_TRAIN),
        (4, "g2", "G", SPLIT_TRAIN), (4, "v2", "V", SPLIT_TRAIN),
        (8, "g5", "G", SPLIT_TRAIN),  # a game-only user
        (5, "v1", "V", SPLIT_TRAIN), (5, "g1", "G", SPLIT_VALID),
        (6, "v2", "V", SPLIT_TRAIN), (6, "g2", "G", SPLIT_TEST), (6, "g7", "G", SPLIT_TEST),
        (7, "v2", "V", SPLIT_TRAIN), (7, "g8", "G", SPLIT_TEST),  # truth not among candidates
    ]
    users, items, domains, split = zip(*rows, strict=True)
    return build_dataset(users, items, domains, event_split=split)


def test_published_split_is_used_as_is():
    dataset = published_dataset()
    split = cross_domain_split(dataset, "G")
    assert split.published
    ids = dataset.user_ids
    assert ids[split.train_users].tolist() == ["1", "2", "3", "4"]
    assert ids[split.test_users].tolist() == ["6"]  # one source event is enough
    assert ids[split.left_out_users].tolist() == ["7"]
    assert split.validation is not None
    assert ids[split.validation.test_users].tolist() == ["5"]
    # candidates come from every target training event, the game-only user included
    assert [k.split("::")[1] for k in split.candidate_keys] == ["g1", "g2", "g3", "g5"]
    assert split.candidate_keys[split.ground_truth(int(split.test_users[0]))].tolist() == ["G::g2"]
    plan = EvaluationPlan({}, {"game": cross_domain_users(dataset, "G")})
    assert np.array_equal(plan.pretraining_mask(dataset), dataset.event_split == SPLIT_TRAIN)


@pytest.mark.parametrize("published", [False, True])
def test_the_partition_survives_its_payload_and_rebuilds_the_same_view(published):
    dataset = published_dataset() if published else random_cross_domain(num_users=80)
    target = "G" if published else "T"
    users = cross_domain_users(dataset, target)
    back = CrossDomainUsers.from_payload(users.to_payload())
    assert back.published == published and back.target_domain == target
    direct, rebuilt = cross_domain_split(dataset, target), cross_domain_view(dataset, back)
    assert direct.summary() == rebuilt.summary()
    for name in ("train_users", "test_users", "left_out_users", "candidates", "popularity",
                 "source_events", "target_train_events", "ground_truth_events"):
        assert np.array_equal(getattr(direct, name), getattr(rebuilt, name)), name
    assert direct.validation is not None and rebuilt.validation is not None
    assert np.array_equal(direct.validation.test_users, rebuilt.validation.test_users)


def test_an_unknown_or_too_small_target_domain_cannot_be_evaluated():
    dataset = random_cross_domain(num_users=80)
    with pytest.raises(InfeasibleEvaluation, match="no domain 'X'"):
        cross_domain_users(dataset, "X")
    small = random_cross_domain(num_users=4)
    with pytest.raises(InfeasibleEvaluation, match="only 4 users"):
        cross_domain_users(small, "T")
