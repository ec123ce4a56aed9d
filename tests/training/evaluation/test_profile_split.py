import numpy as np
import pandas as pd
import pytest
from data_helpers import build_dataset
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

from uservec.training.evaluation.profile_split import (
    AGE_BUCKETS,
    Fold,
    bucket_names,
    class_codes,
    holdout_split,
    inner_folds,
    profile_folds,
    profile_labels,
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
    """Enough users per class for sklearn to cut 5 folds: only the id-order guard can refuse."""
    labels = np.array(list("ab" * 10))
    in_order = np.arange(20)
    assert len(profile_folds(in_order, labels)) == 5  # sklearn itself accepts these labels
    swapped = in_order.copy()
    swapped[[3, 4]] = swapped[[4, 3]]
    with pytest.raises(ValueError, match="id order"):
        profile_folds(swapped, labels)
    with pytest.raises(ValueError, match="id order"):
        profile_folds(np.repeat(np.arange(10), 2), labels)  # a user twice


def test_low_label_rows_are_the_protocol_split_with_seed_0():
    """Each fold's labelled rows are StratifiedShuffleSplit(train_size=0.1, random_state=0)
    of its training fold, exactly: a change of seed changes the labelled users."""
    labels = profile_labels(profile_dataset(300), "gender")
    folds = profile_folds(labels.users, labels.labels, low_label=True)
    for fold in folds:
        for seed, same in ((0, True), (1, False)):
            splitter = StratifiedShuffleSplit(n_splits=1, train_size=0.1, random_state=seed)
            keep, _ = next(splitter.split(fold.pool, labels.labels[fold.pool]))
            assert np.array_equal(fold.train, np.sort(fold.pool[keep])) == same


def test_inner_splits_stay_inside_the_given_rows():
    labels = np.array(list("ab" * 20 + "aaa"))
    folds = inner_folds(labels)
    assert len(folds) == 3
    assert np.array_equal(np.sort(np.concatenate([f.test for f in folds])), np.arange(43))
    holdout = holdout_split(labels)
    assert np.intersect1d(holdout.train, holdout.test).size == 0
    assert holdout.train.size + holdout.test.size == 43


def test_codes_and_counts_follow_the_class_order():
    labels = profile_labels(profile_dataset(), "age", AGE_BUCKETS)
    codes = labels.codes()
    assert np.array_equal(labels.classes[codes], labels.labels)
    assert list(labels.counts()) == labels.classes.tolist()
    assert sum(labels.counts().values()) == labels.users.size
    assert class_codes(np.array(["b", "a"]), np.array(["b", "a"])).tolist() == [0, 1]


def test_a_fold_survives_its_payload():
    fold = profile_folds(*profile_labels(profile_dataset(), "gender")[:2])[0]
    back = Fold.from_payload(fold.to_payload())
    for key in ("train", "test", "pool"):
        assert np.array_equal(getattr(back, key), getattr(fold, key))
        assert getattr(back, key).dtype == np.int64
