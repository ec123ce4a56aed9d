"""Readers for each raw format; every one returns the same :class:`RawData` event table.

A loader only parses and validates: it turns a source's files into one row per event (user, item,
timestamp, domain[, rating][, split]) and says which files it read. Ordering, the domain partition,
the vocabulary and the CSR layout are applied once, for every format alike, in ``prepare.py``.

Formats (``DataConfig.format``), one module each:

- ``movielens``: a MovieLens-100K folder (``u.data`` TAB user,item,rating,timestamp; ``u.user``).
- ``movielens-1m``: a MovieLens-1M folder (ratings, ``users.dat``, ``movies.dat``).
- ``generic``: an interactions CSV / CSV.GZ / Parquet file plus an optional users file.
- ``peterrec``: PeterRec's one-user-per-line CSV (0 = padding; ``s1,..,sn,,t1,..`` = two domains).
- ``amazon-cdrib``: the CDRIB cross-domain split (``<A>_<B>/{train,valid,test}.txt`` per domain).
- ``synthetic``: the generated dataset of ``synthetic.py``.

Errors name the file, the line (1-based, as an editor shows it) or row, and the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from uservec.training.config import DataConfig
from uservec.training.data.loaders.amazon import cdrib_files, load_amazon_cdrib
from uservec.training.data.loaders.common import (
    LOADER_VERSION,
    DataError,
    RawData,
    check_exists,
    parse_timestamps,
)
from uservec.training.data.loaders.generic import generic_files, load_generic
from uservec.training.data.loaders.movielens import (
    load_movielens,
    load_movielens_1m,
    movielens_1m_files,
    movielens_100k_files,
)
from uservec.training.data.loaders.peterrec import load_peterrec, peterrec_file

__all__ = [
    "FORMATS",
    "LOADER_VERSION",
    "SYNTHETIC_SEED",
    "DataError",
    "RawData",
    "describe_source",
    "load_source",
    "parse_timestamps",
]

FORMATS = ("movielens", "movielens-1m", "generic", "peterrec", "amazon-cdrib", "synthetic")
#: Seed of the synthetic dataset built from a config (docs/protocols.md: seed 0 everywhere).
SYNTHETIC_SEED = 0
_DOWNLOADABLE = {"movielens": "movielens-100k"}


def _required_path(config: DataConfig) -> Path:
    if not config.path:
        hint = ""
        if config.format in _DOWNLOADABLE:
            hint = f" (or download it: uservec download {_DOWNLOADABLE[config.format]})"
        raise DataError(f"data.path is required for format {config.format!r}{hint}")
    path = Path(config.path).expanduser()
    check_exists(path, "data path")
    return path


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
        if config.synthetic_basket:  # absent otherwise: earlier preparations keep their hash
            settings["basket"] = config.synthetic_basket
        return [], settings
    if config.format not in FORMATS:
        raise DataError(f"unknown data format {config.format!r}; expected one of {list(FORMATS)}")
    path = _required_path(config)
    if config.format == "movielens":
        return movielens_100k_files(path), settings
    if config.format == "movielens-1m":
        return movielens_1m_files(path), settings
    if config.format == "generic":
        settings.update(
            user_col=config.user_col, item_col=config.item_col,
            timestamp_col=config.timestamp_col, domain_col=config.domain_col,
            rating_col=config.rating_col,
        )
        return generic_files(path, config), settings
    if config.format == "peterrec":
        return [peterrec_file(path)], settings
    files, domains = cdrib_files(path)
    settings["domains"] = domains
    return files, settings


def load_source(config: DataConfig) -> RawData:
    """Parse the configured (non-synthetic) source into raw events, after checking its files."""
    files, settings = describe_source(config)
    path = Path(config.path or "").expanduser()
    if config.format == "movielens":
        return load_movielens(path, files, settings)
    if config.format == "movielens-1m":
        return load_movielens_1m(path, files, settings)
    if config.format == "generic":
        return load_generic(config, files, settings)
    if config.format == "peterrec":
        return load_peterrec(files, settings)
    return load_amazon_cdrib(path, files, settings)
