"""The step model equals the fused model on whole sequences, whatever the history and padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from uservec.contract.ids import NUM_RESERVED, PAD_ID
from uservec.training.fused import FusedUserModel, ProfileTask, RecommendTask
from uservec.training.model import ClassificationHead, ItemScoringHead, NextItNet
from uservec.training.streaming import StreamingUserModel, receptive_field

DIM, VOCAB, MAX_LEN = 16, 40, 24


def _fused() -> FusedUserModel:
    """Every pass kind: backbone, serial and parallel patches, an item patch, a domain filter,
    and both readouts."""
    torch.manual_seed(0)
    encoder = NextItNet(VOCAB, DIM, (1, 2), 3)
    encoder.add_task("taste", bottleneck=4, placement="serial", item_rank=2)
    encoder.add_task("cross", bottleneck=4, placement="parallel")
    keep = torch.arange(VOCAB) % 2 == 1
    fused = FusedUserModel(
        encoder,
        {"taste": ProfileTask(ClassificationHead(DIM, 3), patches="taste", readout="mean"),
         "plain": ProfileTask(ClassificationHead(DIM, 2))},
        {"cross": RecommendTask(ItemScoringHead(DIM, 5), patches="cross", source_keep=keep),
         "mean": RecommendTask(ItemScoringHead(DIM, 4), readout="mean")},
    )
    with torch.no_grad():
        for param in fused.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return fused.eval()


FUSED = _fused()
STEP = StreamingUserModel(FUSED)


def _full(sequences: list[list[int]], length: int) -> tuple[torch.Tensor, ...]:
    rows = [[PAD_ID] * (length - len(s)) + s for s in sequences]
    with torch.no_grad():
        return FUSED(torch.tensor(rows, dtype=torch.int64))


histories = st.lists(
    st.lists(st.integers(NUM_RESERVED, VOCAB - 1), min_size=0, max_size=MAX_LEN),
    min_size=1, max_size=4,
)


@settings(max_examples=25, deadline=None)
@given(sequences=histories, extra_padding=st.integers(0, 5))
def test_streaming_equals_encoding_the_whole_sequence(sequences, extra_padding):
    """Every output, for histories of any length up to max_len and any left padding."""
    length = max(len(s) for s in sequences) + extra_padding
    if length == 0:
        length = 1
    expected = _full(sequences, length)
    streamed = STEP.stream(sequences)[1:]
    for name, want, got in zip(FUSED.output_names, expected, streamed, strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-4, err_msg=name)


def test_pad_is_no_event_and_the_empty_state_reads_like_an_all_pad_row():
    state = STEP.empty_state(2)
    with torch.no_grad():
        after = STEP(state, torch.tensor([PAD_ID, NUM_RESERVED]))[0]
    assert torch.equal(after[0], state[0])
    assert not torch.equal(after[1], state[1])
    for want, got in zip(_full([[]], 3), STEP.stream([[]])[1:], strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)


def test_beyond_max_len_the_last_readout_equals_the_latest_window():
    """The documented window: the newest position reads only receptive_field events."""
    rf = receptive_field(FUSED.encoder)
    rng = np.random.default_rng(0)
    # only even items: the filtered pass keeps none of them, its query stays the empty one
    history = [int(x) * 2 for x in rng.integers(NUM_RESERVED, VOCAB // 2, size=3 * rf)]
    streamed = STEP.stream([history])
    latest = _full([history[-rf:]], rf)
    names = FUSED.output_names
    for name in ("user_vector", "profile.plain"):
        i = names.index(name)
        np.testing.assert_allclose(streamed[1 + i].numpy(), latest[i].numpy(), atol=1e-4)
    mean = names.index("query.mean")
    assert not np.allclose(streamed[1 + mean].numpy(), latest[mean].numpy(), atol=1e-4)


def test_state_size_is_the_buffers_plus_the_readouts():
    k, passes = 3, len(FUSED.passes)
    buffers = sum((k - 1) * (d + 2 * d) for d in (1, 2)) * DIM
    assert STEP.state_size == passes * (buffers + 2 * DIM + 1)


@pytest.mark.parametrize("batch", [1, 3])
def test_one_step_batches_users_independently(batch):
    seqs = [[NUM_RESERVED + i, NUM_RESERVED + 2 * i + 1] for i in range(batch)]
    together = STEP.stream(seqs)
    for row, seq in enumerate(seqs):
        alone = STEP.stream([seq])
        for a, b in zip(together, alone, strict=True):
            np.testing.assert_allclose(a[row].numpy(), b[0].numpy(), atol=1e-6)
