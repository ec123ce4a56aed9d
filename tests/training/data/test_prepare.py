from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uservec.contract.ids import NUM_RESERVED, UNK_ID
from uservec.training.config import DataConfig
from uservec.training.data import prepare as prepare_module
from uservec.training.data.loaders import RawData
from uservec.training.data.prepare import (
    compute_fingerprint,
    load_dataset,
    prepare,
    sort_ids,
)


def raw_events(users, items, timestamps, domains=None, **kwargs) -> RawData:
    frame = pd.DataFrame({
        "user_id": pd.Series(users, dtype=str),
        "item_id": pd.Series(items, dtype=str),
        "timestamp": np.asarray(timestamps, dtype=np.int64),
        "domain": pd.Series(domains if domains is not None else ["d"] * len(users), dtype=str),
    })
    return RawData(frame, **kwargs)


def keys_of(data, user: int) -> list[str]:
    return data.catalog[data.item_index[data.offsets[user] : data.offsets[user + 1]]].tolist()


def test_sort_ids_numeric_only_when_every_id_is_an_integer():
    assert sort_ids(np.array(["10", "9", "-1"]))[0].tolist() == ["-1", "9", "10"]
    assert sort_ids(np.array(["10", "9", "a"]))[0].tolist() == ["10", "9", "a"]
    ordered, rank = sort_ids(np.array(["b", "a", "b"]))
    assert ordered.tolist() == ["a", "b"] and rank.tolist() == [1, 0, 1]


def test_timestamp_ties_break_by_numeric_item_id_and_full_ties_keep_file_order():
    raw = raw_events(["1"] * 5, ["10", "9", "10", "2", "9"], [5, 5, 5, 1, 5])
    data = prepare(raw)
    assert keys_of(data, 0) == ["d::2", "d::9", "d::9", "d::10", "d::10"]
    # Full ties (same user, time and item): file order, visible through the per-event domains.
    raw = raw_events(["1", "1"], ["a", "a"], [3, 3], domains=["x", "y"], item_ids_per_domain=True)
    assert keys_of(prepare(raw), 0) == ["x::a", "y::a"]


def test_item_ids_compare_as_strings_when_one_is_not_an_integer():
    data = prepare(raw_events(["1"] * 3, ["10", "9", "x"], [0, 0, 0]))
    assert keys_of(data, 0) == ["d::10", "d::9", "d::x"]


def test_item_under_several_domains_belongs_to_the_most_frequent_then_alphabetical():
    raw = raw_events(
        users=["1", "1", "2", "2", "3", "3"],
        items=["a", "a", "a", "b", "b", "c"],
        timestamps=[0, 1, 2, 3, 4, 5],
        domains=["Y", "Y", "X", "Y", "X", "Z"],
    )
    data = prepare(raw)
    assert data.catalog.tolist() == ["X::b", "Y::a", "Z::c"]  # a: 2xY vs 1xX; b: tie -> X
    assert data.domains == ("X", "Y", "Z")
    assert data.event_domain.tolist() == [1, 1, 1, 0, 0, 2]
    assert data.catalog_domain.tolist() == [0, 1, 2]


def test_domain_that_owns_no_item_disappears():
    data = prepare(raw_events(["1", "1", "1"], ["a", "a", "a"], [0, 1, 2], ["B", "B", "A"]))
    assert data.domains == ("B",) and data.event_domain.tolist() == [0, 0, 0]


def test_min_count_maps_rare_items_to_unk_but_catalog_keeps_them():
    raw = raw_events(["1", "1", "2", "2", "2"], ["a", "b", "a", "c", "a"], [0, 1, 2, 3, 4])
    data = prepare(raw, min_count=2)
    assert data.catalog.tolist() == ["d::a", "d::b", "d::c"]
    assert data.vocab.keys == ("d::a",)
    assert data.items.tolist() == [NUM_RESERVED, UNK_ID, NUM_RESERVED, UNK_ID, NUM_RESERVED]
    assert data.catalog[data.item_index].tolist() == ["d::a", "d::b", "d::a", "d::c", "d::a"]


events = st.lists(
    st.tuples(st.sampled_from(["1", "2", "10", "u"]), st.sampled_from(["3", "20", "b"]),
              st.integers(0, 4), st.sampled_from(["P", "Q"])),
    min_size=1, max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(events)
def test_prepare_keeps_every_event_and_orders_each_user_by_time(rows):
    users, items, times, domains = map(list, zip(*rows, strict=True))
    data = prepare(raw_events(users, items, times, domains))
    assert data.num_events == len(rows) and data.offsets[-1] == len(rows)
    assert sorted(data.user_ids.tolist()) == sorted(set(users))
    for user in range(data.num_users):
        span = slice(data.offsets[user], data.offsets[user + 1])
        assert np.all(np.diff(data.timestamps[span]) >= 0)
    expected = sorted(zip(users, items, times, strict=True))
    got = sorted(
        (data.user_ids[u], key.split("::", 1)[1], int(t))
        for u in range(data.num_users)
        for key, t in zip(keys_of(data, u), data.timestamps[data.offsets[u] : data.offsets[u + 1]],
                          strict=True)
    )
    assert got == expected
    assert np.array_equal(data.event_domain, data.catalog_domain[data.item_index])


def test_fingerprint_changes_with_min_count_settings_and_file_content(tmp_path: Path):
    path = tmp_path / "e.csv"
    path.write_text("user_id,item_id,timestamp\n1,a,1\n", encoding="utf-8")
    base = compute_fingerprint([path], {"format": "generic"}, 1)
    assert compute_fingerprint([path], {"format": "generic"}, 2) != base
    assert compute_fingerprint([path], {"format": "generic", "user_col": "u"}, 1) != base
    path.write_text("user_id,item_id,timestamp\n1,a,2\n", encoding="utf-8")
    assert compute_fingerprint([path], {"format": "generic"}, 1) != base


def test_load_dataset_caches_by_fingerprint(tmp_path: Path, monkeypatch):
    events = tmp_path / "e.csv"
    events.write_text("user_id,item_id,timestamp\n1,a,1\n1,b,2\n2,a,3\n", encoding="utf-8")
    config = DataConfig(format="generic", path=str(events))
    first = load_dataset(config, tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 1

    def no_reload(config):
        raise AssertionError("the cached preparation should have been used")

    monkeypatch.setattr(prepare_module, "load_raw", no_reload)
    again = load_dataset(config, tmp_path / "cache")
    assert again.fingerprint == first.fingerprint
    assert np.array_equal(again.items, first.items)
    monkeypatch.undo()

    events.write_text("user_id,item_id,timestamp\n1,a,1\n", encoding="utf-8")
    changed = load_dataset(config, tmp_path / "cache")
    assert changed.fingerprint != first.fingerprint and changed.num_events == 1
    rare = load_dataset(DataConfig(format="generic", path=str(events), min_count=2),
                        tmp_path / "cache")
    assert rare.fingerprint != changed.fingerprint
    assert len(list((tmp_path / "cache").iterdir())) == 3


def test_load_dataset_without_cache_dir_and_synthetic_route():
    data = load_dataset(DataConfig(format="synthetic", synthetic_users=20, synthetic_items=40,
                                   synthetic_domains=2))
    assert data.num_users == 20 and data.domains == ("domain0", "domain1")
    assert list(data.users.columns) == ["gender", "age", "occupation"]
    assert data.fingerprint == compute_fingerprint([], data.settings["source"], 1)


def test_empty_raw_data_is_an_error():
    with pytest.raises(ValueError, match="no events"):
        prepare(raw_events([], [], []))


def test_missing_label_tokens_make_users_unlabelled_not_a_class():
    """Issue 22.11: a placeholder such as ``Unknown`` in a users file used to become a class."""
    from uservec.training.evaluation.profile_split import profile_labels

    attributes = pd.DataFrame({"job": ["nurse", "Unknown", " ", "clerk"], "age": [30, 40, 50, 60]},
                              index=pd.Index(["1", "2", "3", "4"], name="user_id"))
    raw = raw_events(["1", "2", "3", "4"], ["a", "b", "a", "b"], [1, 2, 3, 4])
    raw = RawData(raw.interactions, attributes)
    default = prepare(raw)
    assert profile_labels(default, "job").classes.tolist() == ["Unknown", "clerk", "nurse"]
    tokens = prepare(raw, missing_labels=("", "Unknown"))
    labels = profile_labels(tokens, "job")
    assert labels.classes.tolist() == ["clerk", "nurse"] and labels.users.tolist() == [0, 3]
    assert tokens.users["age"].dtype == default.users["age"].dtype  # untouched columns keep theirs
    assert tokens.fingerprint != default.fingerprint  # a cached preparation is not reused


def test_missing_label_tokens_reach_the_fingerprint_only_when_set(tmp_path: Path):
    """Preparations made before the setting existed keep their fingerprint (and cache)."""
    (tmp_path / "a.csv").write_text("x")
    files = [tmp_path / "a.csv"]
    assert compute_fingerprint(files, {}, 1) == compute_fingerprint(files, {}, 1, ("",))
    assert compute_fingerprint(files, {}, 1) != compute_fingerprint(files, {}, 1, ("", "NA"))
