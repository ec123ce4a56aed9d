"""The order-free objective: basket-style data is detected, and set pretraining learns it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from uservec.contract.ids import PAD_ID
from uservec.training.batching import SetWindows, training_part
from uservec.training.config import EvalConfig, ModelConfig, PretrainConfig
from uservec.training.data.prepare import prepare
from uservec.training.data.synthetic import generate_synthetic
from uservec.training.data.time_order import resolve_objective, time_order
from uservec.training.evaluation.next_item import popularity_next_item
from uservec.training.model import NextItemHead
from uservec.training.objectives import set_loss
from uservec.training.pretrain import pretrain

MODEL = ModelConfig(dim=16, dilations=(1, 2), max_len=12)
EVAL = EvalConfig(k=10, batch_size=128)


@pytest.fixture(scope="module")
def baskets():
    return prepare(generate_synthetic(n_users=200, n_items=80, n_domains=1, seed=0, basket=4))


def test_basket_mode_ties_three_of_four_events_and_auto_picks_set(baskets):
    order = time_order(baskets)
    assert order.tied_share == pytest.approx(0.75, abs=0.03)
    assert resolve_objective("auto", order)[0] == "set"
    sequential = prepare(generate_synthetic(n_users=50, n_items=80, n_domains=1, seed=0))
    assert time_order(sequential).tied_with_predecessor == 0
    assert resolve_objective("auto", time_order(sequential))[0] == "next_item"
    no_time = dataclasses.replace(sequential, settings={"info": {"timestamps": "file order"}})
    assert resolve_objective("auto", time_order(no_time)) == (
        "set", "auto: the source has no timestamps (file order)")


def test_set_windows_hold_out_a_disjoint_subset_of_the_training_part(baskets):
    windows = SetWindows(baskets, max_len=12, holdout=0.25, max_targets=5)
    drawn = windows.draw(np.random.default_rng(0))
    again = windows.draw(np.random.default_rng(0))
    assert torch.equal(drawn.inputs, again.inputs) and len(drawn) == len(windows)
    inputs, targets = drawn[0]
    part = training_part(baskets.sequence(0))
    used = [int(i) for i in (*inputs.tolist(), *targets.tolist()) if i != PAD_ID]
    assert len(used) <= len(part) and set(used) <= {int(i) for i in part}
    real = targets[targets != PAD_ID]
    assert 1 <= real.numel() <= 5


def test_set_loss_is_the_mean_cross_entropy_over_positions_and_targets():
    torch.manual_seed(0)
    head = NextItemHead(4, 10)
    hidden = torch.randn(1, 3, 4)
    items = torch.tensor([[PAD_ID, 5, 6]])
    targets = torch.tensor([[7, 8, PAD_ID]])
    log_probs = torch.log_softmax(head(hidden[0, 1:]), dim=-1)  # the two real positions
    expected = -log_probs[:, [7, 8]].mean()
    assert set_loss(hidden, items, targets, head).item() == pytest.approx(expected.item(),
                                                                          rel=1e-6)


def test_set_pretraining_on_baskets_beats_popularity(baskets, tmp_path: Path):
    cfg = PretrainConfig(epochs=6, batch_size=32, lr=1e-2, patience=100, objective="auto")
    result = pretrain(baskets, MODEL, cfg, EVAL, tmp_path, seed=0)
    assert result.objective["objective"] == "set"
    popularity = popularity_next_item(baskets, "valid", k=10)
    assert result.val_metrics["ndcg@10"] > 1.2 * popularity["ndcg@10"]
