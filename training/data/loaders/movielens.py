"""MovieLens folders: 100K (``u.data``, ``u.user``, ``u.item``) and 1M (``ratings``, ``users.dat``,
``movies.dat``).

Both expose their movie titles (``RawData.item_titles``) so the two catalogues can be matched by
normalised title and year (:mod:`.titles`): a model pretrained on one serves the other.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from uservec.contract.ids import DEFAULT_DOMAIN
from uservec.training.data.loaders.common import (
    DataError,
    RawData,
    check_exists,
    first_bad,
    id_column,
    interactions_frame,
    numeric_column,
    parse_timestamps,
    read_csv,
    unique_users,
)

logger = logging.getLogger(__name__)

#: ML-1M ratings: GroupLens' ``ratings.dat`` (with timestamps) or a Parquet re-save of its pairs
ML1M_RATINGS = ("ratings.dat", "ratings.parquet")


# --------------------------------------------------------------------------- MovieLens-100K


def movielens_100k_files(path: Path) -> list[Path]:
    """``u.data`` plus ``u.user`` and ``u.item`` where the folder has them."""
    if not path.is_dir() or not (path / "u.data").is_file():
        raise DataError(f"{path}: movielens data.path must be the ml-100k folder (with "
                        "u.data); get it with 'uservec download movielens-100k'")
    optional = [path / name for name in ("u.user", "u.item") if (path / name).is_file()]
    return [path / "u.data", *optional]


def load_movielens(folder: Path, files: list[Path], settings: dict[str, object]) -> RawData:
    """MovieLens-100K: ``u.data`` events (one domain), ``u.user`` age/gender/occupation/zip."""
    data_path = files[0]
    columns = ["user_id", "item_id", "rating", "timestamp"]
    frame = read_csv(
        data_path, sep="\t", header=None, names=columns,
        dtype={"user_id": str, "item_id": str, "rating": str, "timestamp": str},
    )
    interactions = interactions_frame(
        id_column(frame["user_id"], data_path, "user_id", 1, "line"),
        id_column(frame["item_id"], data_path, "item_id", 1, "line"),
        parse_timestamps(frame["timestamp"], data_path, "timestamp", 1, "line"),
        DEFAULT_DOMAIN,
        rating=numeric_column(frame["rating"], data_path, "rating", 1, "line"),
    )
    by_name = {path.name: path for path in files}
    users = None
    if "u.user" in by_name:
        users = _movielens_users(by_name["u.user"])
    else:
        logger.warning("%s: no u.user file; the dataset has no user attributes", folder)
    titles = _titles_100k(by_name["u.item"]) if "u.item" in by_name else None
    return RawData(interactions, users, tuple(files), dict(settings), item_titles=titles)


def _movielens_users(path: Path) -> pd.DataFrame:
    columns = ["user_id", "age", "gender", "occupation", "zip"]
    frame = read_csv(path, sep="|", header=None, names=columns, dtype=str, encoding="latin-1")
    user_ids = id_column(frame["user_id"], path, "user_id", 1, "line")
    for column in columns[1:]:
        id_column(frame[column], path, column, 1, "line")
    ages = frame["age"].str.fullmatch(r"\d+").to_numpy(dtype=bool)
    if not ages.all():
        index = first_bad(~ages)
        raise DataError(
            f"{path}, line {index + 1}: age {frame['age'].iloc[index]!r} is not an integer"
        )
    users = pd.DataFrame({
        "age": frame["age"].astype(np.int64).to_numpy(),
        "gender": frame["gender"].astype(str).to_numpy(),
        "occupation": frame["occupation"].astype(str).to_numpy(),
        "zip": frame["zip"].astype(str).to_numpy(),
    }, index=pd.Index(user_ids.to_numpy(), name="user_id"))
    return unique_users(users, path, first_row=1, unit="line")


def _titles_100k(path: Path) -> pd.Series:
    """``u.item``: movie id -> title with year, e.g. ``Toy Story (1995)`` (latin-1 text)."""
    frame = read_csv(path, sep="|", header=None, dtype=str, encoding="latin-1",
                     usecols=[0, 1])
    ids = id_column(frame[0], path, "movie id", 1, "line")
    return pd.Series(frame[1].fillna("").to_numpy(), index=pd.Index(ids.to_numpy(), name="item_id"))


# --------------------------------------------------------------------------- MovieLens-1M


def movielens_1m_files(path: Path) -> list[Path]:
    """The ratings file, then ``users.dat`` and ``movies.dat`` where the folder has them."""
    ratings = [path / name for name in ML1M_RATINGS if (path / name).is_file()] if path.is_dir() \
        else []
    if not ratings:
        raise DataError(f"{path}: movielens-1m data.path must be the ml-1m folder (with "
                        f"{' or '.join(ML1M_RATINGS)}, users.dat, movies.dat)")
    optional = [path / name for name in ("users.dat", "movies.dat") if (path / name).is_file()]
    return [ratings[0], *optional]


def load_movielens_1m(folder: Path, files: list[Path], settings: dict[str, object]) -> RawData:
    """MovieLens-1M: ratings (one domain), ``users.dat`` gender/age code/occupation code/zip.

    GroupLens' ``ratings.dat`` carries timestamps. A Parquet copy of its (user, movie) pairs
    without them leaves only the file order, which is not chronological: the events of a user are
    then a set, and the report says so (``info.timestamps``).
    """
    ratings = files[0]
    if ratings.suffix == ".parquet":
        interactions, order = _pairs_from_parquet(ratings), "file order"
    else:
        interactions, order = _ratings_dat(ratings), "unix seconds"
    by_name = {path.name: path for path in files}
    users = _users_1m(by_name["users.dat"]) if "users.dat" in by_name else None
    titles = _titles_1m(by_name["movies.dat"]) if "movies.dat" in by_name else None
    logger.info("%s: %d events (timestamps: %s)", folder, len(interactions), order)
    return RawData(interactions, users, tuple(files), dict(settings),
                   info={"timestamps": order}, item_titles=titles)


def _pairs_from_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read Parquet: {exc}") from exc
    columns = {c.lower(): c for c in frame.columns}
    user_col, item_col = columns.get("userid"), columns.get("movieid")
    if user_col is None or item_col is None:
        raise DataError(f"{path}: expected columns userID and movieID, found {list(frame.columns)}")
    return interactions_frame(
        id_column(frame[user_col], path, user_col, 1, "row"),
        id_column(frame[item_col], path, item_col, 1, "row"),
        np.arange(len(frame), dtype=np.int64),
        DEFAULT_DOMAIN,
    )


def _split_dat(path: Path, width: int) -> pd.DataFrame:
    """A GroupLens ``::``-separated file as strings, every line checked for its field count."""
    check_exists(path, "file")
    try:
        lines = path.read_text(encoding="latin-1").splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from exc
    rows = [line.split("::") for line in lines]
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            raise DataError(f"{path}, line {number}: expected {width} fields separated by '::', "
                            f"found {len(row)}")
    if not rows:
        raise DataError(f"{path}: empty file")
    return pd.DataFrame(rows, dtype=str)


def _ratings_dat(path: Path) -> pd.DataFrame:
    frame = _split_dat(path, 4)
    return interactions_frame(
        id_column(frame[0], path, "UserID", 1, "line"),
        id_column(frame[1], path, "MovieID", 1, "line"),
        parse_timestamps(frame[3], path, "Timestamp", 1, "line"),
        DEFAULT_DOMAIN,
        rating=numeric_column(frame[2], path, "Rating", 1, "line"),
    )


def _users_1m(path: Path) -> pd.DataFrame:
    """``UserID::Gender::Age::Occupation::Zip``; age and occupation are GroupLens' codes.

    The age codes (1, 18, 25, 35, 45, 50, 56) are the lower edges of the 7 buckets, so
    ``buckets = [18, 25, 35, 45, 50, 56]`` gives the same classes as on MovieLens-100K.
    """
    frame = _split_dat(path, 5)
    user_ids = id_column(frame[0], path, "UserID", 1, "line")
    ages = frame[2].str.fullmatch(r"\d+").to_numpy(dtype=bool)
    if not ages.all():
        index = first_bad(~ages)
        raise DataError(f"{path}, line {index + 1}: age {frame[2].iloc[index]!r} is not a code")
    users = pd.DataFrame({
        "gender": frame[1].to_numpy(),
        "age": frame[2].astype(np.int64).to_numpy(),
        "occupation": frame[3].to_numpy(),
        "zip": frame[4].to_numpy(),
    }, index=pd.Index(user_ids.to_numpy(), name="user_id"))
    return unique_users(users, path, first_row=1, unit="line")


def _titles_1m(path: Path) -> pd.Series:
    frame = _split_dat(path, 3)
    ids = id_column(frame[0], path, "MovieID", 1, "line")
    return pd.Series(frame[1].to_numpy(), index=pd.Index(ids.to_numpy(), name="item_id"))
