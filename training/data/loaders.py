"""Readers for each raw format; every one returns the same :class:`RawData` event table.

A loader only parses and validates: it turns a source's files into one row per event (user, item,
timestamp, domain[, rating][, split]) and says which files it read. Ordering, the domain partition,
the vocabulary and the CSR layout are applied once, for every format alike, in ``prepare.py``.

Formats (``DataConfig.format``):

- ``movielens``: a MovieLens-100K folder (``u.data`` TAB user,item,rating,timestamp; ``u.user``).
- ``generic``: an interactions CSV / CSV.GZ / Parquet file plus an optional users file.
- ``peterrec``: PeterRec's one-user-per-line CSV (0 = padding; ``s1,..,sn,,t1,..`` = two domains).
- ``amazon-cdrib``: the CDRIB cross-domain split (``<A>_<B>/{train,valid,test}.txt`` per domain).
- ``synthetic``: the generated dataset of ``synthetic.py``.

Errors name the file, the line (1-based, as an editor shows it) or row, and the problem.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from uservec.contract.ids import DEFAULT_DOMAIN, DOMAIN_SEPARATOR
from uservec.training.config import DataConfig
from uservec.training.data.dataset import SPLIT_TEST, SPLIT_TRAIN, SPLIT_VALID

logger = logging.getLogger(__name__)

#: Bump when a loader's output for the same files changes, so cached prepared data is rebuilt.
LOADER_VERSION = 1

FORMATS = ("movielens", "generic", "peterrec", "amazon-cdrib", "synthetic")
#: Seed of the synthetic dataset built from a config (PROTOCOLS.md: seed 0 everywhere).
SYNTHETIC_SEED = 0

_INTEGER = re.compile(r"[+-]?\d+")
_PETERREC_PADDING = "0"
_CDRIB_SPLITS = (("train", SPLIT_TRAIN), ("valid", SPLIT_VALID), ("test", SPLIT_TEST))


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


# --------------------------------------------------------------------------- shared helpers


def _where(path: Path, row: int, unit: str) -> str:
    return f"{path}, {unit} {row}"


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise DataError(f"{path}: {what} does not exist")


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _require_columns(frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; the file has columns {list(frame.columns)}"
        )


def _id_column(
    values: pd.Series, path: Path, column: str, first_row: int, unit: str
) -> pd.Series:
    """Ids as strings; a missing value is an error naming its row."""
    missing = values.isna().to_numpy()
    if missing.any():
        row = first_row + _first_bad(missing)
        raise DataError(f"{_where(path, row, unit)}: missing value in column {column!r}")
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
    where = lambda index: _where(path, first_row + index, unit)  # noqa: E731
    missing = values.isna().to_numpy()
    if missing.any():
        raise DataError(f"{where(_first_bad(missing))}: missing timestamp in column {column!r}")
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
            index = _first_bad(~is_number)
            raise DataError(f"{where(index)}: unparsable timestamp {values.iloc[index]!r}")
        as_float = numeric.to_numpy(dtype=np.float64)
        fractional = as_float != np.floor(as_float)
        if fractional.any():
            index = _first_bad(fractional)
            raise DataError(
                f"{where(index)}: timestamp {str(values.iloc[index])!r} is not a whole number of "
                "seconds (expected unix seconds or ISO-8601)"
            )
        return numeric.to_numpy().astype(np.int64)
    parsed = pd.to_datetime(values.astype(str), format="ISO8601", errors="coerce", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        index = _first_bad(bad)
        raise DataError(
            f"{where(index)}: unparsable timestamp {values.iloc[index]!r} "
            "(expected unix seconds or ISO-8601)"
        )
    seconds = (parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    return seconds.to_numpy(dtype=np.int64)


def _read_csv(path: Path, **kwargs: Any) -> pd.DataFrame:
    """pandas.read_csv that keeps line numbers exact (blank lines stay) and wraps every failure."""
    _check_exists(path, "file")
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


def _read_table(path: Path, string_columns: list[str]) -> tuple[pd.DataFrame, int, str]:
    """A CSV (optionally compressed) or Parquet table with (first data row number, row unit)."""
    _check_exists(path, "file")
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
    frame = _read_csv(path, dtype=dict.fromkeys(string_columns, str))
    # Line 1 is the header.
    return frame, 2, "line"


def _domain_column(
    values: pd.Series, path: Path, column: str, first_row: int, unit: str
) -> pd.Series:
    domains = _id_column(values, path, column, first_row, unit)
    bad = domains.str.contains(DOMAIN_SEPARATOR, regex=False).to_numpy()
    if bad.any():
        index = _first_bad(bad)
        raise DataError(
            f"{_where(path, first_row + index, unit)}: domain {domains.iloc[index]!r} must not "
            f"contain {DOMAIN_SEPARATOR!r}"
        )
    return domains


def _is_integer_text(values: pd.Series) -> np.ndarray:
    return values.astype(str).str.fullmatch(_INTEGER.pattern).to_numpy(dtype=bool)


# --------------------------------------------------------------------------- source description


def _required_path(config: DataConfig) -> Path:
    if not config.path:
        hint = ""
        if config.format == "movielens":
            hint = " (or download it: see training.data.download)"
        raise DataError(f"data.path is required for format {config.format!r}{hint}")
    path = Path(config.path).expanduser()
    _check_exists(path, "data path")
    return path


def _peterrec_file(path: Path) -> Path:
    """A PeterRec file, or the one to use in a folder: the finetune file holds both domains."""
    return _file_in(path, (".csv",), lambda name: "finetune" in name,
                    "one PeterRec CSV (or one '*finetune*' file)")


#: file endings the generic loader reads (``_read_table``)
_TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


def _generic_file(path: Path) -> Path:
    """The interactions table, or the one to use in a folder (a dataset folder is a natural path,
    e.g. one holding ``interactions.csv.gz`` beside a users table and a README)."""
    return _file_in(path, _TABLE_SUFFIXES, lambda name: name.startswith("interactions."),
                    "one table (CSV, CSV.GZ, Parquet) or one 'interactions.*' table")


def _file_in(path: Path, suffixes: tuple[str, ...], preferred: Callable[[str], bool],
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


def _cdrib_folders(path: Path) -> dict[str, Path]:
    """{domain: folder}: folder ``<A>_<B>`` holds domain ``A`` (CDRIB's naming and loader)."""
    if not path.is_dir():
        raise DataError(f"{path}: amazon-cdrib data.path must be a folder with <A>_<B> subfolders")
    folders = {
        p.name.split("_", 1)[0]: p for p in sorted(path.iterdir()) if p.is_dir() and "_" in p.name
    }
    if len(folders) != 2:
        raise DataError(
            f"{path}: expected two subfolders <A>_<B> and <B>_<A>, found {sorted(folders)}"
        )
    return folders


def describe_source(config: DataConfig) -> tuple[list[Path], dict[str, Any]]:
    """(files read, settings that shape the result) for a config, without parsing anything.

    ``load_dataset`` fingerprints these before loading, so a cached preparation is found without
    re-reading the data.
    """
    settings: dict[str, Any] = {"format": config.format, "loader_version": LOADER_VERSION}
    if config.format == "synthetic":
        settings.update(
            users=config.synthetic_users, items=config.synthetic_items,
            domains=config.synthetic_domains, seed=SYNTHETIC_SEED,
        )
        return [], settings
    if config.format not in FORMATS:
        raise DataError(f"unknown data format {config.format!r}; expected one of {list(FORMATS)}")
    path = _required_path(config)
    if config.format == "movielens":
        if not path.is_dir() or not (path / "u.data").is_file():
            raise DataError(f"{path}: movielens data.path must be the ml-100k folder (with "
                            "u.data); get it with 'uservec download movielens-100k'")
        files = [path / "u.data"] + ([path / "u.user"] if (path / "u.user").is_file() else [])
        return files, settings
    if config.format == "generic":
        settings.update(
            user_col=config.user_col, item_col=config.item_col,
            timestamp_col=config.timestamp_col, domain_col=config.domain_col,
            rating_col=config.rating_col,
        )
        files = [_generic_file(path)]
        if config.users_path:
            users_path = Path(config.users_path).expanduser()
            _check_exists(users_path, "users file")
            if not users_path.is_file():
                raise DataError(f"{users_path}: data.users_path must be a file, not a folder")
            files.append(users_path)
        return files, settings
    if config.format == "peterrec":
        return [_peterrec_file(path)], settings
    folders = _cdrib_folders(path)
    settings["domains"] = sorted(folders)
    files = [folders[d] / f"{split}.txt" for d in sorted(folders) for split, _ in _CDRIB_SPLITS]
    for file in files:
        _check_exists(file, "CDRIB split file")
    return files, settings


# --------------------------------------------------------------------------- loaders


def _interactions(
    user_id: pd.Series,
    item_id: pd.Series,
    timestamp: np.ndarray,
    domain: pd.Series | str,
    rating: np.ndarray | None = None,
    split: np.ndarray | None = None,
) -> pd.DataFrame:
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


def _numeric_column(
    values: pd.Series, path: Path, column: str, first_row: int, unit: str
) -> np.ndarray:
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.isna().to_numpy()
    if bad.any():
        index = _first_bad(bad)
        raise DataError(
            f"{_where(path, first_row + index, unit)}: column {column!r} value "
            f"{values.iloc[index]!r} is not a number"
        )
    return numeric.to_numpy(dtype=np.float64)


def load_movielens(folder: Path) -> RawData:
    """MovieLens-100K: ``u.data`` events (one domain) and ``u.user`` age/gender/occupation/zip."""
    files, settings = describe_source(DataConfig(format="movielens", path=str(folder)))
    data_path = files[0]
    columns = ["user_id", "item_id", "rating", "timestamp"]
    frame = _read_csv(
        data_path, sep="\t", header=None, names=columns,
        dtype={"user_id": str, "item_id": str, "rating": str, "timestamp": str},
    )
    interactions = _interactions(
        _id_column(frame["user_id"], data_path, "user_id", 1, "line"),
        _id_column(frame["item_id"], data_path, "item_id", 1, "line"),
        parse_timestamps(frame["timestamp"], data_path, "timestamp", 1, "line"),
        DEFAULT_DOMAIN,
        rating=_numeric_column(frame["rating"], data_path, "rating", 1, "line"),
    )
    users = None
    if len(files) > 1:
        users = _movielens_users(files[1])
    else:
        logger.warning("%s: no u.user file; the dataset has no user attributes", folder)
    return RawData(interactions, users, tuple(files), settings)


def _movielens_users(path: Path) -> pd.DataFrame:
    columns = ["user_id", "age", "gender", "occupation", "zip"]
    frame = _read_csv(path, sep="|", header=None, names=columns, dtype=str, encoding="latin-1")
    user_ids = _id_column(frame["user_id"], path, "user_id", 1, "line")
    for column in columns[1:]:
        _id_column(frame[column], path, column, 1, "line")
    ages = frame["age"].str.fullmatch(r"\d+").to_numpy(dtype=bool)
    if not ages.all():
        index = _first_bad(~ages)
        raise DataError(
            f"{path}, line {index + 1}: age {frame['age'].iloc[index]!r} is not an integer"
        )
    users = pd.DataFrame({
        "age": frame["age"].astype(np.int64).to_numpy(),
        "gender": frame["gender"].astype(str).to_numpy(),
        "occupation": frame["occupation"].astype(str).to_numpy(),
        "zip": frame["zip"].astype(str).to_numpy(),
    }, index=pd.Index(user_ids.to_numpy(), name="user_id"))
    return _unique_users(users, path, first_row=1, unit="line")


def _unique_users(users: pd.DataFrame, path: Path, first_row: int, unit: str) -> pd.DataFrame:
    duplicated = users.index.duplicated()
    if duplicated.any():
        index = _first_bad(duplicated)
        raise DataError(
            f"{_where(path, first_row + index, unit)}: user {users.index[index]!r} appears twice"
        )
    return users


def load_generic(config: DataConfig) -> RawData:
    """Interactions CSV/CSV.GZ/Parquet (+ optional users file) with configurable column names.

    ``domain_col`` / ``rating_col`` default to the columns ``domain`` / ``rating`` when present;
    timestamps may be unix seconds or ISO-8601 strings.
    """
    files, settings = describe_source(config)
    path = files[0]
    domain_col = config.domain_col
    rating_col = config.rating_col
    frame, first_row, unit = _read_table(
        path, [config.user_col, config.item_col, domain_col or "domain"]
    )
    _require_columns(
        frame,
        [config.user_col, config.item_col, config.timestamp_col]
        + [c for c in (domain_col, rating_col) if c is not None],
        path,
    )
    domain_col = domain_col or ("domain" if "domain" in frame.columns else None)
    rating_col = rating_col or ("rating" if "rating" in frame.columns else None)
    domain: pd.Series | str = DEFAULT_DOMAIN
    if domain_col is not None:
        domain = _domain_column(frame[domain_col], path, domain_col, first_row, unit)
    interactions = _interactions(
        _id_column(frame[config.user_col], path, config.user_col, first_row, unit),
        _id_column(frame[config.item_col], path, config.item_col, first_row, unit),
        parse_timestamps(frame[config.timestamp_col], path, config.timestamp_col, first_row, unit),
        domain,
        rating=None if rating_col is None else _numeric_column(
            frame[rating_col], path, rating_col, first_row, unit
        ),
    )
    users = _generic_users(files[1], config.user_col) if len(files) > 1 else None
    return RawData(interactions, users, tuple(files), settings)


def _generic_users(path: Path, user_col: str) -> pd.DataFrame:
    """Users file ``user_id,<attribute columns>`` (the id column may also be named ``user_col``)."""
    frame, first_row, unit = _read_table(path, [user_col, "user_id"])
    column = user_col if user_col in frame.columns else "user_id"
    _require_columns(frame, [column], path)
    user_ids = _id_column(frame[column], path, column, first_row, unit)
    users = frame.drop(columns=[column]).reset_index(drop=True)
    users.index = pd.Index(user_ids.to_numpy(), name="user_id")
    return _unique_users(users, path, first_row, unit)


def load_peterrec(path: Path) -> RawData:
    """PeterRec CSV: one user per line (user id = 0-based line index), item ids in time order.

    ``0`` is padding and is dropped. A line ``s1,..,sn,,t1,..`` holds source items, an empty field,
    then target items: domains ``source`` and ``target`` (ids are per domain). Timestamps are the
    positions in the line.
    """
    files, settings = describe_source(DataConfig(format="peterrec", path=str(path)))
    file = files[0]
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{file}: cannot read: {exc}") from exc
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise DataError(f"{file}: empty file")
    users: list[str] = []
    items: list[str] = []
    domains: list[str] = []
    positions: list[int] = []
    for number, line in enumerate(lines, start=1):
        fields = [field.strip() for field in line.split(",")]
        if "" in fields:
            cut = fields.index("")
            parts = (("source", fields[:cut]), ("target", [f for f in fields[cut + 1 :] if f]))
        else:
            parts = (("source", fields),)
        count = 0
        for domain, tokens in parts:
            for token in tokens:
                if not token.isdigit():
                    raise DataError(f"{file}, line {number}: item id {token!r} is not an integer")
                if token.lstrip("0") == "":  # 0 (or 00) is padding
                    continue
                users.append(str(number - 1))
                items.append(token)
                domains.append(domain)
                positions.append(count)
                count += 1
        if count == 0:
            raise DataError(f"{file}, line {number}: user has no events (only padding or empty)")
    interactions = _interactions(
        pd.Series(users, dtype=str), pd.Series(items, dtype=str),
        np.asarray(positions, dtype=np.int64), pd.Series(domains, dtype=str),
    )
    logger.info("%s: %d users, %d events (timestamps = positions)", file, len(lines), len(items))
    return RawData(
        interactions, None, (file,), settings, item_ids_per_domain=True,
        info={"timestamps": "position in line"},
    )


def load_amazon_cdrib(folder: Path) -> RawData:
    """CDRIB split: ``<A>_<B>/{train,valid,test}.txt`` (TAB user, item) hold domain ``A``.

    Users ``0 .. n_common-1`` are the same people in both domains; higher ids are different people
    per domain and are namespaced ``"<domain>:<id>"``. ``n_common`` = 1 + the largest user id in
    the valid/test files (CDRIB's cold-start users are the last common users; 2179 for game/video).
    The files have no timestamps: timestamps are the global file order (domains alphabetically,
    then train, valid, test), so the order of one user's events across domains is arbitrary.
    """
    files, settings = describe_source(DataConfig(format="amazon-cdrib", path=str(folder)))
    parts: list[tuple[str, int, pd.DataFrame, Path]] = []
    for file in files:
        domain = file.parent.name.split("_", 1)[0]
        split = dict(_CDRIB_SPLITS)[file.stem]
        frame = _read_csv(file, sep="\t", header=None, names=["user", "item"], dtype=str)
        for column in ("user", "item"):
            values = _id_column(frame[column], file, column, 1, "line")
            integer = _is_integer_text(values)
            if not integer.all():
                index = _first_bad(~integer)
                raise DataError(
                    f"{file}, line {index + 1}: {column} id {values.iloc[index]!r} "
                    "is not an integer"
                )
        parts.append((domain, split, frame, file))
    n_common = 1 + max(
        int(frame["user"].astype(np.int64).max())
        for _, split, frame, _ in parts if split != SPLIT_TRAIN
    )
    user_frames = []
    for domain, _, frame, _ in parts:
        raw_ids = frame["user"].to_numpy(dtype=str)
        common = frame["user"].astype(np.int64).to_numpy() < n_common
        namespaced = np.char.add(f"{domain}:", raw_ids)
        user_frames.append(pd.Series(np.where(common, raw_ids, namespaced), dtype=str))
    lengths = [len(frame) for _, _, frame, _ in parts]
    interactions = _interactions(
        pd.concat(user_frames, ignore_index=True),
        pd.concat([frame["item"] for _, _, frame, _ in parts], ignore_index=True).astype(str),
        np.arange(sum(lengths), dtype=np.int64),
        pd.Series(np.repeat([d for d, _, _, _ in parts], lengths), dtype=str),
        split=np.repeat([s for _, s, _, _ in parts], lengths),
    )
    logger.info("%s: %d events, users < %d are common", folder, len(interactions), n_common)
    return RawData(
        interactions, None, tuple(files), settings, item_ids_per_domain=True,
        info={"n_common_users": n_common, "timestamps": "file order"},
    )
