import numpy as np
import pandas as pd
import pytest
from data_helpers import build_dataset, random_cross_domain
from sklearn.model_selection import StratifiedKFold

from uservec.training.data.dataset import SPLIT_TEST, SPLIT_TRAIN, SPLIT_VALID
from uservec.training.protocols import (
    AGE_BUCKETS,
    LeakError,
    binary_matrix,
    bucket_names,
    cross_domain_split,
    event_users,
    holdout_split,
    inner_folds,
    pretraining_mask,
    profile_folds,
    profile_labels,
    split_users,
)


def profile_dataset(num_users: int = 100) -> object:
    rng = np.random.default_rng(1)
    users = pd.DataFrame(
        {
            "age": rng.integers(10, 70, num_users),
            "gender": rng.choice(["M", "F"], num_users, p=[0.7, 0.3]),
        },
        index=np.arange(1, num_users + 1),
    )
    users.loc[5, "gender"] = None  # a user with an unknown label
    events = [(u, int(i)) for u in users.index for i in rng.integers(0, 30, 6)]
    user_ids, item_ids = zip(*events, strict=True)
    return build_dataset(user_ids, item_ids, users=users)


# ---------------------------------------------------------------------------------------- P2


def test_binary_matrix_counts_repeated_events_once():
    matrix = binary_matrix(np.array([0, 0, 0, 2]), np.array([1, 1, 3, 0]), (3, 4))
    np.testing.assert_array_equal(matrix.toarray(), [[0, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0]])
    assert binary_matrix(np.array([], int), np.array([], int), (2, 2)).nnz == 0


def test_age_buckets_follow_digitize_with_readable_names():
    assert bucket_names(AGE_BUCKETS) == [
        "<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"
    ]
    dataset = profile_dataset()
    labels = profile_labels(dataset, "age", AGE_BUCKETS)
    ages = dataset.users["age"].to_numpy()[labels.users]
    names = np.array(bucket_names(AGE_BUCKETS))
    assert (labels.labels == names[np.digitize(ages, AGE_BUCKETS)]).all()
    assert list(labels.classes) == [c for c in names if c in set(labels.labels)]


def test_users_without_a_label_are_left_out():
    dataset = profile_dataset()
    labels = profile_labels(dataset, "gender")
    assert labels.users.size == dataset.num_users - 1
    assert "5" not in set(dataset.user_ids[labels.users])
    assert set(labels.classes) == {"F", "M"}
    with pytest.raises(KeyError):
        profile_labels(dataset, "zip")


@pytest.mark.parametrize("low_label", [False, True])
def test_folds_are_disjoint_and_cover_every_labelled_user(low_label):
    labels = profile_labels(profile_dataset(), "gender")
    folds = profile_folds(labels.users, labels.labels, low_label=low_label)
    assert len(folds) == 5
    tests = np.concatenate([fold.test for fold in folds])
    assert np.array_equal(np.sort(tests), np.arange(labels.users.size))
    for fold in folds:
        assert np.intersect1d(fold.pool, fold.test).size == 0
        assert np.union1d(fold.pool, fold.test).size == labels.users.size
        assert np.isin(fold.train, fold.pool).all()
        if low_label:
            assert fold.train.size == int(0.1 * fold.pool.size)  # sklearn floors train_size
        else:
            assert np.array_equal(fold.train, fold.pool)


def test_folds_are_the_protocol_stratified_kfold():
    labels = profile_labels(profile_dataset(), "gender")
    folds = profile_folds(labels.users, labels.labels)
    reference = StratifiedKFold(5, shuffle=True, random_state=0).split(labels.users, labels.labels)
    for fold, (_, test) in zip(folds, reference, strict=True):
        assert np.array_equal(fold.test, test)


def test_low_label_subset_is_stratified():
    labels = profile_labels(profile_dataset(300), "gender")
    for fold in profile_folds(labels.users, labels.labels, low_label=True):
        share = np.mean(labels.labels[fold.train] == "F")
        pool_share = np.mean(labels.labels[fold.pool] == "F")
        assert abs(share - pool_share) < 0.05


def test_folds_need_users_in_id_order():
    with pytest.raises(ValueError):
        profile_folds(np.array([3, 1, 2, 4, 5]), np.array(list("ababa")))


def test_inner_splits_stay_inside_the_given_rows():
    labels = np.array(list("ab" * 20 + "aaa"))
    folds = inner_folds(labels)
    assert len(folds) == 3
    assert np.array_equal(np.sort(np.concatenate([f.test for f in folds])), np.arange(43))
    holdout = holdout_split(labels)
    assert np.intersect1d(holdout.train, holdout.test).size == 0
    assert holdout.train.size + holdout.test.size == 43


# ---------------------------------------------------------------------------------------- P3


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
    mask = pretraining_mask(dataset, ["T", "B"])
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
    mask = pretraining_mask(dataset, ["G"])
    assert np.array_equal(mask, dataset.event_split == SPLIT_TRAIN)
