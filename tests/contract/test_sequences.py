import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from uservec.contract.ids import PAD_ID
from uservec.contract.sequences import batch_length, encode_batch, encode_sequence

ids = st.lists(st.integers(min_value=2, max_value=10_000), max_size=50)


@given(ids, st.integers(min_value=1, max_value=40))
def test_encode_keeps_latest_events_in_order_and_left_pads(seq, max_len):
    out = encode_sequence(seq, max_len)
    assert out.shape == (max_len,) and out.dtype == np.int64
    kept = seq[-max_len:]
    n_pad = max_len - len(kept)
    assert (out[:n_pad] == PAD_ID).all()
    assert out[n_pad:].tolist() == kept


@given(st.lists(ids, min_size=1, max_size=8), st.integers(min_value=1, max_value=30))
def test_batch_rows_equal_single_encoding(seqs, max_len):
    batch = encode_batch(seqs, max_len)
    assert batch.shape == (len(seqs), max_len)
    for row, seq in zip(batch, seqs, strict=True):
        assert row.tolist() == encode_sequence(seq, max_len).tolist()


@given(st.lists(ids, min_size=1, max_size=8), st.integers(min_value=1, max_value=30))
def test_batch_length_fits_longest_sequence(seqs, max_len):
    length = batch_length(seqs, max_len)
    # the shortest window holding every sequence, capped at max_len
    assert length == max(1, min(max_len, max(len(s) for s in seqs)))


def test_rejects_non_positive_length():
    with pytest.raises(ValueError, match="max_len"):
        encode_sequence([3, 4], 0)
