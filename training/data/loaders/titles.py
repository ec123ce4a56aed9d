"""Matching two catalogues' items by normalised title and release year.

MovieLens-100K and MovieLens-1M number the same films differently; their titles agree once
articles, alternate titles in parentheses, accents and punctuation are normalised
(``"Usual Suspects, The (1995)"`` == ``"The Usual Suspects (1995)"``). About 1,640 of the 1,682
ML-100K films match an ML-1M film this way. The match is what lets a model pretrained on one
population's behaviour, or a baseline trained on its labelled users, serve the other.
"""

from __future__ import annotations

import re
import unicodedata

import pandas as pd

#: articles that catalogues move to the end of a title ("Matrix, The")
_ARTICLES = ("the", "a", "an", "les", "la", "le", "il", "el", "das", "der", "die", "l'")
_YEAR = re.compile(r"\((\d{4})\)\s*$")
_TRAILING_ARTICLE = re.compile(r"^(.*),\s*(" + "|".join(map(re.escape, _ARTICLES)) + r")$")


def title_key(title: str) -> str | None:
    """``"name|year"`` in a canonical spelling, or None for a title without a year.

    Without the year two different films of the same name would merge, so such titles are left
    unmatched rather than guessed.
    """
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    year = _YEAR.search(ascii_title)
    if year is None:
        return None
    name = re.sub(r"\([^)]*\)", " ", ascii_title[: year.start()]).strip().lower()
    moved = _TRAILING_ARTICLE.match(name)
    if moved:
        name = f"{moved.group(2)} {moved.group(1)}"
    name = re.sub(r"[^a-z0-9]+", " ", name).strip()
    return f"{name}|{year.group(1)}" if name else None


def match_titles(source: pd.Series, target: pd.Series) -> dict[str, str]:
    """{source item id: target item id} for items whose title keys agree.

    ``source`` and ``target`` map raw item ids to titles. A key shared by several target items
    (a catalogue listing the same film twice) maps to the first of them in id order, so the
    result is deterministic.
    """
    by_key: dict[str, str] = {}
    for item, title in sorted(target.items(), key=lambda kv: _id_order(str(kv[0]))):
        key = title_key(str(title))
        if key is not None:
            by_key.setdefault(key, str(item))
    matched = {}
    for item, title in source.items():
        key = title_key(str(title))
        if key is not None and key in by_key:
            matched[str(item)] = by_key[key]
    return matched


def _id_order(item: str) -> tuple[int, int | str]:
    """Numeric ids in numeric order, before any non-numeric ones."""
    return (0, int(item)) if item.isdigit() else (1, item)
