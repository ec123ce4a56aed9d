"""The users file beside the events: one row per user of the events, missing labels as NA."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from uservec.training.data.loaders import DataError

logger = logging.getLogger(__name__)


def user_attributes(users: pd.DataFrame, user_ids: np.ndarray,
                    missing_labels: Sequence[str]) -> pd.DataFrame:
    """Row u = user ``user_ids[u]``, with every missing-label token replaced by NA."""
    return blank_missing(align_users(users, user_ids), missing_labels)


def blank_missing(users: pd.DataFrame, missing_labels: Sequence[str]) -> pd.DataFrame:
    """Users-file values equal (after trimming spaces) to a missing-label token become NA.

    Every task reads NA as "unlabelled", so a placeholder such as ``Unknown`` never becomes a
    class of its own (``data.missing_labels``).
    """
    tokens = {str(token).strip() for token in missing_labels}
    if not tokens:
        return users
    users = users.copy()
    for column in users.columns:
        hit = users[column].astype("string").str.strip().isin(tokens).fillna(False).astype(bool)
        if hit.any():  # untouched columns keep their dtype
            users[column] = users[column].mask(hit)
    return users


def align_users(users: pd.DataFrame, user_ids: np.ndarray) -> pd.DataFrame:
    """Row u = user ``user_ids[u]``; users-file users without events are dropped with a warning."""
    index = pd.Index(users.index.astype(str))
    if index.has_duplicates:
        twice = index[index.duplicated()][:5].tolist()
        raise DataError(f"users table lists user(s) twice: {twice}")
    without_events = index[~index.isin(user_ids)]
    if len(without_events):
        logger.warning(
            "%d users in the users file have no events and are dropped (e.g. %s)",
            len(without_events), without_events[:5].tolist(),
        )
    without_attributes = int((~pd.Index(user_ids).isin(index)).sum())
    if without_attributes:
        logger.warning("%d users with events are not in the users file (attributes missing)",
                       without_attributes)
    aligned = users.set_axis(index).reindex(pd.Index(user_ids))
    return aligned.reset_index(drop=True)
