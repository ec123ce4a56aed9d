"""The MovieLens-1M loader: GroupLens' ``::`` files, a Parquet copy without timestamps, titles."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from uservec.training.config import DataConfig
from uservec.training.data.loaders import DataError, describe_source, load_source

USERS = "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n"
MOVIES = "1::Toy Story (1995)::Animation\n2::Usual Suspects, The (1995)::Crime\n"


def _folder(tmp_path: Path, ratings: str | pd.DataFrame) -> Path:
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "users.dat").write_text(USERS, encoding="latin-1")
    (folder / "movies.dat").write_text(MOVIES, encoding="latin-1")
    if isinstance(ratings, str):
        (folder / "ratings.dat").write_text(ratings)
    else:
        ratings.to_parquet(folder / "ratings.parquet")
    return folder


def _load(folder: Path):
    return load_source(DataConfig(format="movielens-1m", path=str(folder)))


def test_ratings_dat_gives_events_with_timestamps_and_ratings(tmp_path):
    raw = _load(_folder(tmp_path, "1::2::5::978300760\n1::1::3::978300000\n2::1::4::978300100\n"))
    events = raw.interactions
    assert events["user_id"].tolist() == ["1", "1", "2"]
    assert events["timestamp"].tolist() == [978300760, 978300000, 978300100]
    assert events["rating"].tolist() == [5.0, 3.0, 4.0]
    assert raw.info["timestamps"] == "unix seconds"


def test_a_parquet_copy_without_timestamps_keeps_file_order_and_says_so(tmp_path):
    pairs = pd.DataFrame({"userID": ["2", "1", "1"], "movieID": ["1", "2", "1"]})
    raw = _load(_folder(tmp_path, pairs))
    assert raw.interactions["timestamp"].tolist() == [0, 1, 2]  # the file's order, nothing else
    assert raw.info["timestamps"] == "file order"
    assert "rating" not in raw.interactions


def test_users_carry_the_grouplens_codes(tmp_path):
    raw = _load(_folder(tmp_path, "1::1::5::1\n2::1::5::2\n3::2::5::3\n"))
    assert raw.users is not None
    assert raw.users.loc["2"].tolist() == ["M", 56, "16", "70072"]
    assert list(raw.users.columns) == ["gender", "age", "occupation", "zip"]


def test_titles_are_read_from_movies_dat(tmp_path):
    raw = _load(_folder(tmp_path, "1::1::5::1\n"))
    assert raw.item_titles is not None
    assert raw.item_titles.to_dict() == {"1": "Toy Story (1995)", "2": "Usual Suspects, The (1995)"}


def test_a_malformed_line_is_named(tmp_path):
    with pytest.raises(DataError, match=r"ratings.dat, line 2: expected 4 fields"):
        _load(_folder(tmp_path, "1::1::5::1\n1::2::5\n"))


def test_a_folder_without_ratings_is_refused_with_what_it_needs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"ratings.dat or ratings.parquet"):
        describe_source(DataConfig(format="movielens-1m", path=str(tmp_path / "empty")))


def test_the_files_read_are_the_ones_fingerprinted(tmp_path):
    folder = _folder(tmp_path, "1::1::5::1\n")
    files, settings = describe_source(DataConfig(format="movielens-1m", path=str(folder)))
    assert [f.name for f in files] == ["ratings.dat", "users.dat", "movies.dat"]
    assert settings["format"] == "movielens-1m"
