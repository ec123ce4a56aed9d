"""What every loader shares: the RawData event table, the error type, and strict column readers.

Errors name the file, the line (1-based, as an editor shows it) or row, and the problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from uservec.contract.ids import DOMAIN_SEPARATOR

#: Bump when a loader's output for the same files changes, so cached prepared data is rebuilt.
LOADER_VERSION = 1

INTEGER = re.compile(r"[+-]?\d+")


class DataError(ValueError):
    """Input data cannot be loaded; the message names the file, the line or row, and the problem."""


@dataclass(frozen=True, eq=False)
class RawData:
    """Parsed events before preparation: one row per event of the source files, in file order."""

    #: columns user_id (str), item_id (str), timestamp (int64), domain (str),
    #: optional rating (float64), optional split (int8 SPLIT_* codes)
    interactions: pd.DataFrame
    #: user attributes indexed by user_id (str), raw values; None when the source has none
    users: pd.DataFrame | None = None
    #: every file read, for the fingerprint
    files: tuple[Path, ...] = ()
    #: loader settings that change the result (format, column names, ...), for the fingerprint
    settings: dict[str, Any] = field(default_factory=dict)
    #: True when raw item ids are only unique within a domain (CDRIB, PeterRec): the item is then
    #: (domain, id) and the most-frequent-domain rule does not merge equal ids across domains
    item_ids_per_domain: bool = False
    #: facts derived while loading (recorded in the prepared settings, not fingerprinted)
    info: dict[str, Any] = field(default_factory=dict)
    #: item titles indexed by raw item id (str), where the source has them: what
    #: :mod:`.titles` matches items of two catalogues by (MovieLens-100K <-> MovieLens-1M)
    item_titles: pd.Series | None = None


def where(path: Path, row: int, unit: str) -> str:
    """``file, line N``: how every error names its place."""
    return f"{path}, {unit} {row}"


def check_exists(path: Path, what: str) -> None:
    """A missing file is a :class:`DataError` naming it, never a bare FileNotFoundError."""
    if not path.exists():
        raise DataError(f"{path}: {what} does not exist")


def first_bad(mask: np.ndarray) -> int:
    """Index of the first True of ``mask``: the row an error names."""
    return int(np.flatnonzero(mask)[0])


def require_columns(frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    """Every named column exists, else an error listing what the file has."""
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; the file has columns {list(frame.columns)}"
        )


def id_column(
    values: pd.Series, path: Path, column: str, first_row: int, unit: str
) -> pd.Series:
    """Ids as strings; a missing value is an error naming its row."""
    missing = values.isna().to_numpy()
    if missing.any():
        row = first_row + first_bad(missing)
        raise DataError(f"{where(path, row, unit)}: missing value in column {column!r}")
    if pd.api.types.is_float_dtype(values.dtype):
        # Parquet may store integer ids as floats; "12.0" would not match "12" elsewhere.
        as_int = values.astype(np.int64)
        if (as_int == values).all():
            values = as_int
    return values.astype(str).reset_index(drop=True)


def parse_timestamps(
    values: pd.Series, path: Path, column: str, first_row: int = 1, unit: str = "line"
) -> np.ndarray:
    """(E,) int64 unix seconds from integers or ISO-8601 strings; errors name the first bad row."""
    at = lambda index: where(path, first_row + index, unit)  # noqa: E731
    missing = values.isna().to_numpy()
    if missing.any():
        raise DataError(f"{at(first_bad(missing))}: missing timestamp in column {column!r}")
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.to_numpy(dtype=np.int64)
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values):
        stamps = pd.to_datetime(values, utc=True)  # Parquet timestamp columns
        return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
    if pd.api.types.is_bool_dtype(values.dtype):
        raise DataError(f"{path}: timestamp column {column!r} holds booleans")
    numeric = pd.to_numeric(values, errors="coerce")
    is_number = numeric.notna().to_numpy()
    if is_number.all() or (is_number.mean() >= 0.5 and not pd.api.types.is_numeric_dtype(values)):
        if not is_number.all():
            index = first_bad(~is_number)
            raise DataError(f"{at(index)}: unparsable timestamp {values.iloc[index]!r}")
        as_float = numeric.to_numpy(dtype=np.float64)
        fractional = as_float != np.floor(as_float)
        if fractional.any():
            index = first_bad(fractional)
            raise DataError(
                f"{at(index)}: timestamp {str(values.iloc[index])!r} is not a whole number of "
                "seconds (expected unix seconds or ISO-8601)"
            )
        return numeric.to_numpy().astype(np.int64)
    parsed = pd.to_datetime(values.astype(str), format="ISO8601", errors="coerce", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        index = first_bad(bad)
        raise DataError(
            f"{at(index)}: unparsable timestamp {values.iloc[index]!r} "
            "(expected unix seconds or ISO-8601)"
        )
    seconds = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return seconds.to_numpy(dtype=np.int64)


def read_csv(path: Path, **kwargs: Any) -> pd.DataFrame:
    """pandas.read_csv that keeps line numbers exact (blank lines stay) and wraps every failure."""
    check_exists(path, "file")
    try:
        frame = pd.read_csv(
            path, skip_blank_lines=False, keep_default_na=False, na_values=[""], **kwargs
        )
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: empty file") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot parse: {exc}") from exc
    if frame.empty:
        raise DataError(f"{path}: empty file (no data rows)")
    return frame


def read_table(path: Path, string_columns: list[str]) -> tuple[pd.DataFrame, int, str]:
    """A CSV (optionally compressed) or Parquet table with (first data row number, row unit)."""
    check_exists(path, "file")
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read Parquet: {exc}") from exc
        if frame.empty:
            raise DataError(f"{path}: empty file (no rows)")
        return frame.reset_index(drop=True), 1, "row"
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    frame = read_csv(path, dtype=dict.fromkeys(string_columns, str))
    # Line 1 is the header.
    return frame, 2, "line"


def domain_column(
    values: pd.Series, path: Path, column: str, first_row: int, unit: str
) -> pd.Series:
    """Domain names as strings; the separator of namespaced item keys is refused."""
    domains = id_column(values, path, column, first_row, unit)
    bad = domains.str.contains(DOMAIN_SEPARATOR, regex=False).to_numpy()
    if bad.any():
        index = first_bad(bad)
        raise DataError(
            f"{where(path, first_row + index, unit)}: domain {domains.iloc[index]!r} must not "
            f"contain {DOMAIN_SEPARATOR!r}"
        )
    return domains


def is_integer_text(values: pd.Series) -> np.ndarray:
    """(N,) bool: which values are written as integers."""
    return values.astype(str).str.fullmatch(INTEGER.pattern).to_numpy(dtype=bool)


def interactions_frame(
    user_id: pd.Series,
    item_id: pd.Series,
    timestamp: np.ndarray,
    domain: pd.Series | str,
    rating: np.ndarray | None = None,
    split: np.ndarray | None = None,
) -> pd.DataFrame:
    """The one event table every loader returns (columns of :class:`RawData.interactions`)."""
    frame = pd.DataFrame({
        "user_id": user_id.reset_index(drop=True),
        "item_id": item_id.reset_index(drop=True),
        "timestamp": np.asarray(timestamp, dtype=np.int64),
        "domain": domain.reset_index(drop=True) if isinstance(domain, pd.Series) else domain,
    })
    if rating is not None:
        frame["rating"] = np.asarray(rating, dtype=np.float64)
    if split is not None:
        frame["split"] = np.asarray(split, dtype=np.int8)
    return frame


def numeric_column(
    values: pd.Series, path: Path, column: str, first_row: int, unit: str
) -> np.ndarray:
    """(N,) float64; a value that is not a number is an error naming its row."""
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.isna().to_numpy()
    if bad.any():
        index = first_bad(bad)
        raise DataError(
            f"{where(path, first_row + index, unit)}: column {column!r} value "
            f"{values.iloc[index]!r} is not a number"
        )
    return numeric.to_numpy(dtype=np.float64)




def file_in(path: Path, suffixes: tuple[str, ...], preferred: Callable[[str], bool],
            expected: str) -> Path:
    """``path`` if it is a file; in a folder, its one ``preferred`` file, else its only candidate.

    Anything else is ambiguous and is named in the error rather than guessed.
    """
    if path.is_file():
        return path
    candidates = sorted(p for p in path.iterdir()
                        if p.is_file() and p.name.lower().endswith(suffixes))
    chosen = [p for p in candidates if preferred(p.name.lower())]
    if len(chosen) == 1:
        return chosen[0]
    if len(candidates) == 1:
        return candidates[0]
    raise DataError(
        f"{path}: expected {expected} in the folder, found {[p.name for p in candidates]}; "
        "pass the file itself as data.path"
    )


def unique_users(users: pd.DataFrame, path: Path, first_row: int, unit: str) -> pd.DataFrame:
    """A users table whose index has no repeated id (a repeat is an error naming its row)."""
    duplicated = users.index.duplicated()
    if duplicated.any():
        index = first_bad(duplicated)
        raise DataError(
            f"{where(path, first_row + index, unit)}: user {users.index[index]!r} appears twice"
        )
    return users
