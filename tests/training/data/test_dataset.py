import dataclasses

import numpy as np
import pandas as pd

from uservec.training.config import DataConfig
from uservec.training.data.dataset import PreparedDataset
from uservec.training.data.prepare import load_raw, prepare


def assert_same(a: PreparedDataset, b: PreparedDataset) -> None:
    for f in dataclasses.fields(PreparedDataset):
        left, right = getattr(a, f.name), getattr(b, f.name)
        if isinstance(left, np.ndarray):
            assert left.dtype.kind == right.dtype.kind, f.name
            assert np.array_equal(left, right), f.name
        elif isinstance(left, pd.DataFrame):
            pd.testing.assert_frame_equal(left, right, check_dtype=False)
            assert [str(t) for t in left.dtypes] == [str(t) for t in right.dtypes]
        elif f.name == "vocab":
            assert left.keys == right.keys
        else:
            assert left == right, f.name


def test_save_load_round_trip_with_users_and_split(tmp_path):
    root = tmp_path / "cdrib"
    for folder in ("a_b", "b_a"):
        for split in ("train", "valid", "test"):
            (root / folder).mkdir(parents=True, exist_ok=True)
            (root / folder / f"{split}.txt").write_text("0\t1\n3\t2\n", encoding="utf-8")
    with_split = prepare(load_raw(DataConfig(format="amazon-cdrib", path=str(root))), 2, "x")
    with_users = prepare(load_raw(DataConfig(format="synthetic", synthetic_users=15,
                                             synthetic_items=30)), 1, "syn")
    for data in (with_split, with_users):
        again = PreparedDataset.load(data.save(tmp_path / data.name))
        assert_same(data, again)
    assert with_split.event_split is not None and with_users.users is not None


def test_saved_files_need_no_pickle(tmp_path):
    data = prepare(load_raw(DataConfig(format="synthetic", synthetic_users=5, synthetic_items=20)))
    data.save(tmp_path)
    for path in tmp_path.glob("*.npy"):
        np.load(path, allow_pickle=False)  # raises if an object array was pickled
    assert {p.name for p in tmp_path.iterdir()} >= {"meta.json", "vocab.json", "users.parquet"}


def test_summary_counts_events_per_domain():
    data = prepare(load_raw(DataConfig(format="synthetic", synthetic_users=8, synthetic_items=20)))
    summary = data.summary()
    assert sum(summary["domains"].values()) == summary["events"] == data.num_events
    assert summary["users"] == 8 and summary["items"] == len(data.catalog)



def test_restrict_events_hides_exactly_the_masked_events():
    data = prepare(load_raw(DataConfig(format="synthetic", synthetic_users=20,
                                       synthetic_items=30)), 1, "syn")
    keep = np.random.default_rng(0).random(data.num_events) < 0.7
    view = data.restrict_events(keep, "test")
    assert view.num_users == data.num_users and view.vocab is data.vocab
    assert view.num_events == int(keep.sum())
    for user in range(data.num_users):
        rows = np.arange(data.offsets[user], data.offsets[user + 1])
        assert view.sequence(user).tolist() == data.items[rows[keep[rows]]].tolist()
    assert view.fingerprint != data.fingerprint
    assert view.settings["restricted"]["hidden_events"] == int((~keep).sum())
