"""The generic format: an interactions table (CSV, CSV.GZ, Parquet) plus an optional users file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from uservec.contract.ids import DEFAULT_DOMAIN
from uservec.training.config import DataConfig
from uservec.training.data.loaders.common import (
    DataError,
    RawData,
    check_exists,
    domain_column,
    file_in,
    id_column,
    interactions_frame,
    numeric_column,
    parse_timestamps,
    read_table,
    require_columns,
    unique_users,
)

#: file endings the generic loader reads (``_read_table``)
_TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


def _generic_file(path: Path) -> Path:
    """The interactions table, or the one to use in a folder (a dataset folder is a natural path,
    e.g. one holding ``interactions.csv.gz`` beside a users table and a README)."""
    return file_in(path, _TABLE_SUFFIXES, lambda name: name.startswith("interactions."),
                    "one table (CSV, CSV.GZ, Parquet) or one 'interactions.*' table")


def generic_files(path: Path, config: DataConfig) -> list[Path]:
    """The interactions table, then the users file if the config names one."""
    files = [_generic_file(path)]
    if config.users_path:
        users_path = Path(config.users_path).expanduser()
        check_exists(users_path, "users file")
        if not users_path.is_file():
            raise DataError(f"{users_path}: data.users_path must be a file, not a folder")
        files.append(users_path)
    return files


def load_generic(config: DataConfig, files: list[Path], settings: dict[str, object]
                 ) -> RawData:
    """Interactions CSV/CSV.GZ/Parquet (+ optional users file) with configurable column names.

    ``domain_col`` / ``rating_col`` default to the columns ``domain`` / ``rating`` when present;
    timestamps may be unix seconds or ISO-8601 strings.
    """
    path = files[0]
    domain_col = config.domain_col
    rating_col = config.rating_col
    frame, first_row, unit = read_table(
        path, [config.user_col, config.item_col, domain_col or "domain"]
    )
    require_columns(
        frame,
        [config.user_col, config.item_col, config.timestamp_col]
        + [c for c in (domain_col, rating_col) if c is not None],
        path,
    )
    domain_col = domain_col or ("domain" if "domain" in frame.columns else None)
    rating_col = rating_col or ("rating" if "rating" in frame.columns else None)
    domain: pd.Series | str = DEFAULT_DOMAIN
    if domain_col is not None:
        domain = domain_column(frame[domain_col], path, domain_col, first_row, unit)
    interactions = interactions_frame(
        id_column(frame[config.user_col], path, config.user_col, first_row, unit),
        id_column(frame[config.item_col], path, config.item_col, first_row, unit),
        parse_timestamps(frame[config.timestamp_col], path, config.timestamp_col, first_row, unit),
        domain,
        rating=None if rating_col is None else numeric_column(
            frame[rating_col], path, rating_col, first_row, unit
        ),
    )
    users = generic_users(files[1], config.user_col) if len(files) > 1 else None
    return RawData(interactions, users, tuple(files), dict(settings))


def generic_users(path: Path, user_col: str) -> pd.DataFrame:
    """Users file ``user_id,<attribute columns>`` (the id column may also be named ``user_col``)."""
    frame, first_row, unit = read_table(path, [user_col, "user_id"])
    column = user_col if user_col in frame.columns else "user_id"
    require_columns(frame, [column], path)
    user_ids = id_column(frame[column], path, column, first_row, unit)
    users = frame.drop(columns=[column]).reset_index(drop=True)
    users.index = pd.Index(user_ids.to_numpy(), name="user_id")
    return unique_users(users, path, first_row, unit)


