"""PeterRec's own format: one user per line, item ids in time order, ``0`` as padding."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from uservec.training.data.loaders.common import (
    DataError,
    RawData,
    file_in,
    interactions_frame,
)

logger = logging.getLogger(__name__)


def peterrec_file(path: Path) -> Path:
    """A PeterRec file, or the one to use in a folder: the finetune file holds both domains."""
    return file_in(path, (".csv",), lambda name: "finetune" in name,
                    "one PeterRec CSV (or one '*finetune*' file)")


def load_peterrec(files: list[Path], settings: dict[str, object]) -> RawData:
    """PeterRec CSV: one user per line (user id = 0-based line index), item ids in time order.

    ``0`` is padding and is dropped. A line ``s1,..,sn,,t1,..`` holds source items, an empty field,
    then target items: domains ``source`` and ``target`` (ids are per domain). Timestamps are the
    positions in the line.
    """
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
        parts: tuple[tuple[str, list[str]], ...]
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
    interactions = interactions_frame(
        pd.Series(users, dtype=str), pd.Series(items, dtype=str),
        np.asarray(positions, dtype=np.int64), pd.Series(domains, dtype=str),
    )
    logger.info("%s: %d users, %d events (timestamps = positions)", file, len(lines), len(items))
    return RawData(
        interactions, None, (file,), dict(settings), item_ids_per_domain=True,
        info={"timestamps": "position in line"},
    )


