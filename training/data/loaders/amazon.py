"""The CDRIB Amazon cross-domain split (Cao et al., ICDE 2022): ``<A>_<B>/{train,valid,test}``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from uservec.training.data.dataset import SPLIT_TEST, SPLIT_TRAIN, SPLIT_VALID
from uservec.training.data.loaders.common import (
    DataError,
    RawData,
    check_exists,
    first_bad,
    id_column,
    interactions_frame,
    is_integer_text,
    read_csv,
)

logger = logging.getLogger(__name__)

_CDRIB_SPLITS = (("train", SPLIT_TRAIN), ("valid", SPLIT_VALID), ("test", SPLIT_TEST))


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


def cdrib_files(path: Path) -> tuple[list[Path], list[str]]:
    """(the six split files, the two domains), every file checked to exist."""
    folders = _cdrib_folders(path)
    files = [folders[d] / f"{split}.txt" for d in sorted(folders) for split, _ in _CDRIB_SPLITS]
    for file in files:
        check_exists(file, "CDRIB split file")
    return files, sorted(folders)


def load_amazon_cdrib(folder: Path, files: list[Path], settings: dict[str, object]
                      ) -> RawData:
    """CDRIB split: ``<A>_<B>/{train,valid,test}.txt`` (TAB user, item) hold domain ``A``.

    Users ``0 .. n_common-1`` are the same people in both domains; higher ids are different people
    per domain and are namespaced ``"<domain>:<id>"``. ``n_common`` = 1 + the largest user id in
    the valid/test files (CDRIB's cold-start users are the last common users; 2179 for game/video).
    The files have no timestamps: timestamps are the global file order (domains alphabetically,
    then train, valid, test), so the order of one user's events across domains is arbitrary.
    """
    parts: list[tuple[str, int, pd.DataFrame, Path]] = []
    for file in files:
        domain = file.parent.name.split("_", 1)[0]
        split = dict(_CDRIB_SPLITS)[file.stem]
        frame = read_csv(file, sep="\t", header=None, names=["user", "item"], dtype=str)
        for column in ("user", "item"):
            values = id_column(frame[column], file, column, 1, "line")
            integer = is_integer_text(values)
            if not integer.all():
                index = first_bad(~integer)
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
    interactions = interactions_frame(
        pd.concat(user_frames, ignore_index=True),
        pd.concat([frame["item"] for _, _, frame, _ in parts], ignore_index=True).astype(str),
        np.arange(sum(lengths), dtype=np.int64),
        pd.Series(np.repeat([d for d, _, _, _ in parts], lengths), dtype=str),
        split=np.repeat([s for _, s, _, _ in parts], lengths),
    )
    logger.info("%s: %d events, users < %d are common", folder, len(interactions), n_common)
    return RawData(
        interactions, None, tuple(files), dict(settings), item_ids_per_domain=True,
        info={"n_common_users": n_common, "timestamps": "file order"},
    )
