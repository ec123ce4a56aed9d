from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from uservec.contract.ids import NUM_RESERVED, PAD_ID
from uservec.training.batching import NextItemWindows, shuffled_batches
from uservec.training.model import NextItemHead, NextItNet
from uservec.training.objectives import bag_loss, next_item_loss, sampled_softmax_loss

V, D = 64, 16


def test_full_loss_is_cross_entropy_over_non_pad_targets() -> None:
    torch.manual_seed(0)
    head = NextItemHead(D, V)
    hidden = torch.randn(2, 3, D)
    targets = torch.tensor([[PAD_ID, 5, 6], [PAD_ID, PAD_ID, 9]])
    expected = F.cross_entropy(head(hidden[targets != PAD_ID]), torch.tensor([5, 6, 9]))
    torch.testing.assert_close(next_item_loss(hidden, targets, head, "full"), expected)


def test_sampled_loss_with_every_item_as_negative_equals_full_softmax_over_real_items() -> None:
    # each real item drawn once: q = 1/C, S = C, so the logQ correction is 0, and the target's
    # own copy among the negatives (an accidental hit) must be removed
    torch.manual_seed(0)
    head = NextItemHead(D, V)
    hidden = torch.randn(4, D)
    targets = torch.tensor([2, 10, 33, 63])
    negatives = torch.arange(NUM_RESERVED, V)
    expected = F.cross_entropy(head(hidden)[:, NUM_RESERVED:], targets - NUM_RESERVED)
    torch.testing.assert_close(sampled_softmax_loss(hidden, targets, head, negatives), expected)


def test_logq_correction_scales_negatives_to_the_catalogue() -> None:
    # one negative standing for C real items: its logit counts C times in the normaliser
    head = NextItemHead(D, V)
    torch.nn.init.zeros_(head.output.weight)
    torch.nn.init.zeros_(head.output.bias)
    loss = sampled_softmax_loss(torch.zeros(1, D), torch.tensor([5]), head, torch.tensor([7]))
    torch.testing.assert_close(loss, torch.log(torch.tensor(1.0 + (V - NUM_RESERVED))))


def test_unknown_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="full"):
        next_item_loss(torch.zeros(1, 2, D), torch.ones(1, 2, dtype=torch.long),
                       NextItemHead(D, V), "bogus")  # type: ignore[arg-type]


@pytest.mark.parametrize("loss", ["full", "sampled"])
def test_both_losses_train_on_the_tiny_dataset(tiny_dataset, loss: str) -> None:
    torch.manual_seed(0)
    windows = NextItemWindows(tiny_dataset, max_len=8)
    model, head = NextItNet(V, D, (1, 2)), NextItemHead(D, V)
    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-2)
    rng, negatives_rng = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    all_inputs, all_targets = windows[torch.arange(len(windows))]

    def full_loss() -> float:
        with torch.no_grad():
            return float(next_item_loss(model(all_inputs), all_targets, head, "full"))

    before = full_loss()
    for _ in range(5):
        for index in shuffled_batches(len(windows), 16, rng):
            inputs, targets = windows[index]
            value = next_item_loss(model(inputs), targets, head, loss, 16, negatives_rng)
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
    # the full-softmax loss measures both, so the sampled objective must improve the real one
    assert full_loss() < 0.7 * before


def test_bag_loss_is_the_mean_readout_scoring_every_window_target() -> None:
    torch.manual_seed(0)
    head = NextItemHead(4, 10)
    hidden = torch.randn(2, 3, 4)
    items = torch.tensor([[PAD_ID, 3, 4], [5, 6, 7]])
    hidden[0, 0] = 0.0  # the encoder's hidden state is zero at PAD
    targets = torch.tensor([[PAD_ID, 4, 8], [PAD_ID, PAD_ID, PAD_ID]])  # row 2: nothing
    expected_row = -F.log_softmax(head(hidden[0, 1:].mean(0)), -1)[[4, 8]].mean()
    torch.testing.assert_close(bag_loss(hidden, items, targets, head), expected_row)
    empty = torch.full_like(targets, PAD_ID)
    assert bag_loss(hidden, items, empty, head).item() == 0.0


def test_pretraining_with_the_bag_objective_trains(tiny_dataset) -> None:
    torch.manual_seed(0)
    model, head = NextItNet(tiny_dataset.vocab.size, 16, (1, 2)), None
    head = NextItemHead(16, tiny_dataset.vocab.size)
    windows = NextItemWindows(tiny_dataset, 8)
    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-2)
    inputs, targets = windows[torch.arange(len(windows))]
    losses = []
    for _ in range(30):
        loss = bag_loss(model(inputs), inputs, targets, head)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
