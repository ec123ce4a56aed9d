import gzip
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from uservec.contract.ids import DEFAULT_DOMAIN, UNK_ID
from uservec.training.config import ConfigError, DataConfig
from uservec.training.data.dataset import SPLIT_TEST, SPLIT_TRAIN, SPLIT_VALID
from uservec.training.data.loaders import parse_timestamps
from uservec.training.data.prepare import DataError, load_raw, prepare

SHARED = Path("/work/shared/data")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def keys_of(data, user: int) -> list[str]:
    """Catalog keys of a user's events, oldest first."""
    return data.catalog[data.item_index[data.offsets[user] : data.offsets[user + 1]]].tolist()


# --------------------------------------------------------------------------- MovieLens


@pytest.fixture
def movielens_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "ml-100k"
    write(folder / "u.data", "2\t10\t3\t500\n10\t7\t4\t300\n2\t9\t5\t500\n2\t11\t1\t100\n")
    write(folder / "u.user", "2|24|M|technician|85711\n10|53|F|other|T8H1N\n99|30|F|writer|1\n")
    return folder


def test_movielens_users_sorted_numerically_and_events_by_time_then_item(movielens_dir):
    data = prepare(load_raw(DataConfig(format="movielens", path=str(movielens_dir))))
    assert data.user_ids.tolist() == ["2", "10"]  # numeric, not "10" < "2"
    assert keys_of(data, 0) == ["default::11", "default::9", "default::10"]  # ts 100, 500, 500
    assert data.timestamps[:3].tolist() == [100, 500, 500]
    assert data.domains == (DEFAULT_DOMAIN,)


def test_movielens_users_table_is_aligned_and_typed(movielens_dir, caplog):
    with caplog.at_level(logging.WARNING):
        data = prepare(load_raw(DataConfig(format="movielens", path=str(movielens_dir))))
    assert list(data.users.columns) == ["age", "gender", "occupation", "zip"]
    assert data.users["age"].tolist() == [24, 53] and data.users["age"].dtype == np.int64
    assert data.users["zip"].tolist() == ["85711", "T8H1N"]
    assert "no events" in caplog.text  # user 99 has no rating: dropped with a warning


def test_movielens_bad_timestamp_names_file_and_line(movielens_dir):
    write(movielens_dir / "u.data", "1\t2\t3\t100\n1\t3\t3\t100\n1\t4\t3\tyesterday\n")
    with pytest.raises(DataError, match=r"u\.data, line 3: .*timestamp 'yesterday'"):
        load_raw(DataConfig(format="movielens", path=str(movielens_dir)))


def test_movielens_short_line_names_the_line(movielens_dir):
    write(movielens_dir / "u.data", "1\t2\t3\t100\n1\t3\n")
    with pytest.raises(DataError, match=r"u\.data, line 2: missing"):
        load_raw(DataConfig(format="movielens", path=str(movielens_dir)))


def test_movielens_missing_folder_and_empty_file(tmp_path, movielens_dir):
    with pytest.raises(DataError, match="does not exist"):
        load_raw(DataConfig(format="movielens", path=str(tmp_path / "nowhere")))
    write(movielens_dir / "u.data", "")
    with pytest.raises(DataError, match=r"u\.data: empty file"):
        load_raw(DataConfig(format="movielens", path=str(movielens_dir)))


def test_missing_path_is_a_data_error_and_an_unknown_format_a_config_error():
    with pytest.raises(DataError, match=r"data\.path is required"):
        load_raw(DataConfig(format="movielens", path=None))
    # the config refuses an unknown format before the loaders see it
    with pytest.raises(ConfigError, match=r"config\.data\.format: 'lastfm' is not allowed"):
        DataConfig(format="lastfm", path=".")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- generic


GENERIC = (
    "user_id,item_id,timestamp,domain,rating\n"
    "u2,b1,2021-01-02T00:00:00Z,Books,4\n"
    "u1,m1,2021-01-01T00:00:00+01:00,Movies,5\n"
    "u2,m1,2021-01-01,Movies,3\n"
)


def test_generic_csv_parses_iso_timestamps_domains_and_ratings(tmp_path):
    path = write(tmp_path / "events.csv", GENERIC)
    raw = load_raw(DataConfig(format="generic", path=str(path)))
    frame = raw.interactions
    assert frame["timestamp"].tolist() == [1609545600, 1609455600, 1609459200]  # +01:00 honoured
    assert frame["domain"].tolist() == ["Books", "Movies", "Movies"]
    assert frame["rating"].tolist() == [4.0, 5.0, 3.0]
    data = prepare(raw)
    assert data.user_ids.tolist() == ["u1", "u2"]
    assert keys_of(data, 1) == ["Movies::m1", "Books::b1"]
    assert data.domains == ("Books", "Movies")


def test_generic_gzip_and_parquet_load_like_csv(tmp_path):
    csv = write(tmp_path / "a.csv", GENERIC)
    gz = tmp_path / "a.csv.gz"
    gz.write_bytes(gzip.compress(GENERIC.encode()))
    parquet = tmp_path / "a.parquet"
    pd.read_csv(csv, dtype=str).to_parquet(parquet)
    frames = [load_raw(DataConfig(format="generic", path=str(p))).interactions
              for p in (csv, gz, parquet)]
    pd.testing.assert_frame_equal(frames[0], frames[1])
    pd.testing.assert_frame_equal(frames[0], frames[2])


def test_generic_configurable_columns_and_integer_ids_from_parquet(tmp_path):
    path = tmp_path / "x.parquet"
    pd.DataFrame({"who": [3, 1], "what": [20.0, 5.0], "when": [7, 9]}).to_parquet(path)
    config = DataConfig(format="generic", path=str(path), user_col="who", item_col="what",
                        timestamp_col="when")
    frame = load_raw(config).interactions
    assert frame["user_id"].tolist() == ["3", "1"] and frame["item_id"].tolist() == ["20", "5"]
    assert (frame["domain"] == DEFAULT_DOMAIN).all()


def test_generic_users_file_aligns_rows_and_drops_users_without_events(tmp_path, caplog):
    events = write(tmp_path / "e.csv", "user_id,item_id,timestamp\n2,a,1\n1,b,2\n3,a,3\n")
    users = write(tmp_path / "users.csv", "user_id,gender,age\n1,F,30\n2,M,40\n7,F,22\n")
    with caplog.at_level(logging.WARNING):
        data = prepare(load_raw(DataConfig(format="generic", path=str(events),
                                           users_path=str(users))))
    assert data.users["gender"].tolist()[:2] == ["F", "M"]
    assert pd.isna(data.users["gender"].iloc[2])  # user 3 has events but no attributes
    assert "1 users in the users file have no events" in caplog.text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("user_id,item_id\n1,a\n", r"missing column\(s\) \['timestamp'\]"),
        ("user_id,item_id,timestamp\n1,a,100\n1,b,100\n2,c,not-a-time\n",
         r"line 4: unparsable timestamp 'not-a-time'"),
        ("user_id,item_id,timestamp\n1,a,2020-01-01\n1,b,2020-13-45\n",
         r"line 3: unparsable timestamp '2020-13-45'"),
        ("user_id,item_id,timestamp\n1,a,100.5\n", r"line 2: timestamp '100.5' is not a whole"),
        ("user_id,item_id,timestamp\n1,a,100\n,b,100\n",
         r"line 3: missing value in column 'user_id'"),
        ("user_id,item_id,timestamp\n", r"empty file"),
        ("", r"empty file"),
    ],
)
def test_generic_malformed_files_name_file_row_and_problem(tmp_path, text, problem):
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(DataError, match=r"bad\.csv.*" + problem):
        load_raw(DataConfig(format="generic", path=str(path)))


def test_parquet_errors_name_the_row(tmp_path):
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"user_id": ["1", "2"], "item_id": ["a", "b"],
                  "timestamp": ["2020-01-01", "soon"]}).to_parquet(path)
    with pytest.raises(DataError, match=r"bad\.parquet, row 2: unparsable timestamp 'soon'"):
        load_raw(DataConfig(format="generic", path=str(path)))


def test_parse_timestamps_accepts_datetime_columns():
    stamps = pd.Series(pd.to_datetime(["1970-01-01T00:01:00", "2021-01-01T00:00:00"]))
    assert parse_timestamps(stamps, Path("x"), "ts").tolist() == [60, 1609459200]


# --------------------------------------------------------------------------- PeterRec


def test_peterrec_finetune_line_gives_source_and_target_domains(tmp_path):
    path = write(tmp_path / "finetune.csv", "0,0,5,7,5,,3,9\n8,9\n")
    data = prepare(load_raw(DataConfig(format="peterrec", path=str(path))))
    assert data.user_ids.tolist() == ["0", "1"]  # 0-based line index
    assert keys_of(data, 0) == ["source::5", "source::7", "source::5", "target::3", "target::9"]
    assert keys_of(data, 1) == ["source::8", "source::9"]  # ids are per domain: 9 twice
    assert data.domains == ("source", "target")
    assert data.timestamps[:5].tolist() == [0, 1, 2, 3, 4]


def test_peterrec_folder_prefers_the_finetune_file(tmp_path):
    write(tmp_path / "x_pretrain_small.csv", "1,2\n")
    write(tmp_path / "x_finetune_small.csv", "1,2,,3\n")
    raw = load_raw(DataConfig(format="peterrec", path=str(tmp_path)))
    assert raw.interactions["domain"].tolist() == ["source", "source", "target"]


def test_generic_folder_resolves_to_its_interactions_table(tmp_path):
    """A dataset folder (as shipped: interactions.csv.gz beside README and SOURCE.txt) is a
    natural data.path; it must load the same as the file, not fail on reading a directory."""
    table = "user_id,item_id,timestamp\n1,10,5\n1,11,6\n2,10,7\n"
    with gzip.open(tmp_path / "interactions.csv.gz", "wt") as handle:
        handle.write(table)
    write(tmp_path / "SOURCE.txt", "where it came from\n")
    write(tmp_path / "users.csv", "user_id,gender\n1,M\n2,F\n")
    from_folder = load_raw(DataConfig(format="generic", path=str(tmp_path)))
    from_file = load_raw(DataConfig(format="generic", path=str(tmp_path / "interactions.csv.gz")))
    assert from_folder.files == from_file.files
    assert from_folder.interactions.equals(from_file.interactions)


def test_wrong_folders_are_named_not_crashed_on(tmp_path):
    """Each loader says which path is wrong and what it expected (no OSError from deep inside)."""
    write(tmp_path / "interactions.csv", "user_id,item_id,timestamp\n1,2,3\n")
    with pytest.raises(DataError, match=r"users_path must be a file"):
        load_raw(DataConfig(format="generic", path=str(tmp_path), users_path=str(tmp_path)))
    with pytest.raises(DataError, match=r"ml-100k folder \(with u\.data\)"):
        load_raw(DataConfig(format="movielens", path=str(tmp_path)))
    (tmp_path / "game_video").mkdir()
    (tmp_path / "video_game").mkdir()
    with pytest.raises(DataError, match=r"game_video/train\.txt: CDRIB split file does not exist"):
        load_raw(DataConfig(format="amazon-cdrib", path=str(tmp_path)))


def test_generic_folder_without_a_single_table_names_the_candidates(tmp_path):
    write(tmp_path / "a.csv", "user_id,item_id,timestamp\n1,2,3\n")
    write(tmp_path / "b.csv", "user_id,item_id,timestamp\n1,2,3\n")
    ambiguous = r"one 'interactions\.\*' table in the folder, found \['a.csv', 'b.csv'\]"
    with pytest.raises(DataError, match=ambiguous):
        load_raw(DataConfig(format="generic", path=str(tmp_path)))
    (tmp_path / "a.csv").unlink()
    (tmp_path / "b.csv").unlink()
    with pytest.raises(DataError, match=r"found \[\]; pass the file itself"):
        load_raw(DataConfig(format="generic", path=str(tmp_path)))


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1,2\n0,0,0\n", r"line 2: user has no events"),
        ("1,2\n1,x,3\n", r"line 2: item id 'x' is not an integer"),
        ("\n\n", r"empty file"),
    ],
)
def test_peterrec_malformed_lines(tmp_path, text, problem):
    path = write(tmp_path / "seq.csv", text)
    with pytest.raises(DataError, match=r"seq\.csv.*" + problem):
        load_raw(DataConfig(format="peterrec", path=str(path)))


# --------------------------------------------------------------------------- Amazon CDRIB


@pytest.fixture
def cdrib_dir(tmp_path: Path) -> Path:
    root = tmp_path / "amazon"
    # Users 0..2 are common (largest valid/test user id is 2); 5 is a different person per folder.
    write(root / "game_video" / "train.txt", "5\t0\n0\t1\n5\t1\n")
    write(root / "game_video" / "valid.txt", "1\t0\n")
    write(root / "game_video" / "test.txt", "2\t1\n")
    write(root / "video_game" / "train.txt", "5\t0\n1\t0\n2\t1\n")
    write(root / "video_game" / "valid.txt", "0\t1\n")
    write(root / "video_game" / "test.txt", "0\t0\n")
    return root


def test_cdrib_namespaces_domain_only_users_and_records_splits(cdrib_dir):
    data = prepare(load_raw(DataConfig(format="amazon-cdrib", path=str(cdrib_dir))))
    assert data.user_ids.tolist() == ["0", "1", "2", "game:5", "video:5"]  # string order
    assert data.domains == ("game", "video")
    assert keys_of(data, 0) == ["game::1", "video::1", "video::0"]  # file order
    assert keys_of(data, 3) == ["game::0", "game::1"]
    assert keys_of(data, 4) == ["video::0"]
    user0 = slice(data.offsets[0], data.offsets[1])
    assert data.event_split[user0].tolist() == [SPLIT_TRAIN, SPLIT_VALID, SPLIT_TEST]
    assert len(data.catalog) == 4  # item 0 and 1 exist separately in each domain


def test_cdrib_bad_user_id_names_file_and_line(cdrib_dir):
    write(cdrib_dir / "video_game" / "valid.txt", "0\t1\nabc\t2\n")
    with pytest.raises(DataError, match=r"video_game/valid\.txt, line 2: user id 'abc'"):
        load_raw(DataConfig(format="amazon-cdrib", path=str(cdrib_dir)))


def test_cdrib_needs_two_domain_folders(tmp_path):
    (tmp_path / "game_video").mkdir()
    with pytest.raises(DataError, match="expected two subfolders"):
        load_raw(DataConfig(format="amazon-cdrib", path=str(tmp_path)))


# --------------------------------------------------------------------------- real data (slow)


def _load_timed(config: DataConfig):
    started = time.perf_counter()
    data = prepare(load_raw(config))
    return data, time.perf_counter() - started


@pytest.mark.slow
def test_real_movielens_matches_source_txt():
    if not (SHARED / "movielens-100k" / "u.data").is_file():
        pytest.skip("MovieLens-100K not available")
    data, seconds = _load_timed(
        DataConfig(format="movielens", path=str(SHARED / "movielens-100k"))
    )
    assert (data.num_users, data.num_events, len(data.catalog)) == (943, 100_000, 1682)
    assert data.lengths().min() >= 20
    assert data.users["gender"].value_counts().to_dict() == {"M": 670, "F": 273}
    assert data.users["occupation"].nunique() == 21
    assert (data.users["age"].min(), data.users["age"].max()) == (7, 73)
    assert seconds < 30


@pytest.mark.slow
def test_real_ciao_matches_source_txt():
    path = SHARED / "ciao" / "interactions.csv.gz"
    if not path.is_file():
        pytest.skip("Ciao not available")
    config = DataConfig(format="generic", path=str(path))
    data, seconds = _load_timed(config)
    assert (data.num_users, data.num_events, len(data.catalog)) == (7375, 284_086, 105_114)
    assert len(data.domains) == 28 and {"Books", "Games", "DVDs"} <= set(data.domains)
    raw = load_raw(config).interactions  # SOURCE.txt counts the listed (raw) categories
    assert int((raw.groupby("user_id")["domain"].nunique() >= 2).sum()) == 7271
    assert int(raw.duplicated(["user_id", "item_id"]).sum()) == 1436
    assert seconds < 60


@pytest.mark.slow
def test_real_amazon_game_video_matches_source_txt():
    root = SHARED / "amazon-game-video"
    if not root.is_dir():
        pytest.skip("Amazon game/video not available")
    data, seconds = _load_timed(DataConfig(format="amazon-cdrib", path=str(root)))
    assert data.settings["info"]["n_common_users"] == 2179
    assert data.num_events == 155_036 + 1304 + 1381 + 156_091 + 1458 + 1435
    for domain, users, items, pairs in (("game", 24_799, 12_319, 155_036),
                                        ("video", 19_240, 8_751, 156_091)):
        code = data.domains.index(domain)
        train = (data.event_domain == code) & (data.event_split == SPLIT_TRAIN)
        owners = np.repeat(np.arange(data.num_users), data.lengths())[train]
        assert (train.sum(), len(np.unique(owners))) == (pairs, users)
        assert int((data.catalog_domain == code).sum()) == items
    assert data.num_users == 42_303  # CDRIB's "total user num" for this pair
    assert seconds < 60


@pytest.mark.slow
def test_real_peterrec_demo_loads():
    path = SHARED / "peterrec-demo"
    if not path.is_dir():
        pytest.skip("PeterRec demo not available")
    data, _ = _load_timed(DataConfig(format="peterrec", path=str(path)))
    assert data.num_users == 30 and data.domains == ("source", "target")
    assert UNK_ID not in data.items
