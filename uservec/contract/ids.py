"""Reserved item ids and item-key namespacing, defined once for the whole project."""

from __future__ import annotations

from typing import Final

#: Left padding of sequences. Its embedding is zero and it never appears as a target.
PAD_ID: Final[int] = 0
#: Items outside the vocabulary (unseen, or seen fewer than ``min_count`` times).
UNK_ID: Final[int] = 1
#: The one table of reserved ids; real items start at ``NUM_RESERVED``.
RESERVED_IDS: Final[dict[str, int]] = {"<pad>": PAD_ID, "<unk>": UNK_ID}
NUM_RESERVED: Final[int] = len(RESERVED_IDS)

#: Domain used when the data has no domain column (a single-domain dataset).
DEFAULT_DOMAIN: Final[str] = "default"
#: Separates domain and raw item id in an item key. Raw ids may contain ':'; domains may not.
DOMAIN_SEPARATOR: Final[str] = "::"


def item_key(item_id: str, domain: str | None = None) -> str:
    """Namespace a raw item id by its domain: ids are only unique within one domain."""
    domain = DEFAULT_DOMAIN if domain is None or domain == "" else domain
    if ":" in domain:
        raise ValueError(f"domain {domain!r} must not contain ':' (it separates domain and id)")
    return f"{domain}{DOMAIN_SEPARATOR}{item_id}"


def split_item_key(key: str) -> tuple[str, str]:
    """Inverse of :func:`item_key`: ``(domain, raw item id)``."""
    domain, sep, item_id = key.partition(DOMAIN_SEPARATOR)
    if not sep:
        raise ValueError(f"item key {key!r} has no domain (expected 'domain{DOMAIN_SEPARATOR}id')")
    return domain, item_id
