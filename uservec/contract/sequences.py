"""Sequence encoding shared by training and serving: keep the latest events, left-pad.

The encoder is causal and reads the user vector at the last position, so the newest event must sit
at the right edge of the window and padding on the left: then the last position is always a real
event whatever the sequence length, and padding never leaks into the user vector.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from uservec.contract.ids import PAD_ID


def encode_sequence(item_ids: Sequence[int] | np.ndarray, max_len: int) -> np.ndarray:
    """Keep the last ``max_len`` ids (oldest first) and left-pad with ``PAD_ID`` to ``max_len``."""
    if max_len <= 0:
        raise ValueError(f"max_len must be positive, got {max_len}")
    ids = np.asarray(item_ids, dtype=np.int64).reshape(-1)[-max_len:]
    out = np.full(max_len, PAD_ID, dtype=np.int64)
    if ids.size:
        out[max_len - ids.size :] = ids
    return out


def encode_batch(sequences: Sequence[Sequence[int] | np.ndarray], max_len: int) -> np.ndarray:
    """Encode many sequences into one ``(B, max_len)`` int64 array."""
    out = np.full((len(sequences), max_len), PAD_ID, dtype=np.int64)
    for row, seq in enumerate(sequences):
        out[row] = encode_sequence(seq, max_len)
    return out


def batch_length(sequences: Sequence[Sequence[int] | np.ndarray], max_len: int) -> int:
    """Shortest window that holds every sequence of the batch (at least 1, at most ``max_len``).

    Serving pads a batch only to its longest member: a causal left-padded encoder gives the same
    last-position output for any window at least as long as the sequence.
    """
    longest = max((len(seq) for seq in sequences), default=1)
    return max(1, min(max_len, longest))
