"""training.adapt: the four methods, the task network, the training loop, tuning and refit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from adapt_helpers import (
    DIM,
    FAST,
    MAX_LEN,
    VOCAB,
    backbone_state,
    random_pretrained,
)

from uservec.contract.ids import NUM_RESERVED
from uservec.training.adapt import (
    METHODS,
    AdaptSettings,
    Hyperparameters,
    TaskNetwork,
    adapt_settings,
    add_or_reset_task,
    batched_forward,
    build_method,
    count_parameters,
    fit_once,
    hyperparameter_grid,
    length_batches,
)
from uservec.training.config import ConfigError, ExperimentConfig, experiment_config
from uservec.training.model import ClassificationHead
from uservec.training.profile_task import (
    fit_profile_task,
    profile_inputs,
)
from uservec.training.task_artifact import ProfileOutputs, task_artifact


def test_settings_from_config_defaults_and_unknown_keys():
    assert adapt_settings(ExperimentConfig(name="x")) == AdaptSettings()
    cfg = experiment_config({"name": "x", "adapt": {"bottleneck_grid": [8, 32], "max_epochs": 3}})
    assert adapt_settings(cfg).bottleneck_grid == (8, 32)
    with pytest.raises(ConfigError, match=r"config\.adapt: unknown key 'bottlenek'"):
        experiment_config({"name": "x", "adapt": {"bottlenek": 8}})
    with pytest.raises(ConfigError, match=r"config\.adapt\.methods: 'lora' is not allowed"):
        AdaptSettings(methods=("adapter", "lora"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"config\.adapt\.readout: 'max' is not allowed"):
        AdaptSettings(readout="max")  # type: ignore[arg-type]


def test_grid_covers_every_combination_in_order():
    settings = AdaptSettings(bottleneck_grid=(4, 8), adapter_lr_grid=(1e-3, 3e-3),
                             class_weight_grid=(0.0, 1.0))
    grid = hyperparameter_grid("adapter", settings, profile=True)
    assert len(grid) == 8
    assert grid[0] == Hyperparameters(lr=1e-3, bottleneck=4, placement="serial", class_weight=0.0)
    assert {hp.bottleneck for hp in hyperparameter_grid("fine-tune-all", settings, True)} == {None}
    assert {hp.class_weight for hp in hyperparameter_grid("adapter", settings, False)} == {0.0}


def test_placement_grid_is_tuned_for_the_adapter_only():
    settings = AdaptSettings(placement_grid=("serial", "parallel"), adapter_lr_grid=(1e-3, 3e-3))
    grid = hyperparameter_grid("adapter", settings, profile=False)
    assert [(hp.placement, hp.lr) for hp in grid] == [
        ("serial", 1e-3), ("serial", 3e-3), ("parallel", 1e-3), ("parallel", 3e-3)]
    assert {hp.placement for hp in hyperparameter_grid("head-only", settings, False)} == {None}
    fixed = hyperparameter_grid("adapter", AdaptSettings(placement="parallel"), profile=False)
    assert [hp.placement for hp in fixed] == ["parallel"]
    with pytest.raises(ConfigError, match=r"placement_grid: 'beside' is not allowed"):
        AdaptSettings(placement_grid=("serial", "beside"))


def test_item_rank_grid_is_tuned_for_the_adapter_only():
    settings = AdaptSettings(item_rank_grid=(0, 4), adapter_lr_grid=(1e-3, 3e-3))
    grid = hyperparameter_grid("adapter", settings, profile=False)
    assert [(hp.item_rank, hp.lr) for hp in grid] == [(0, 1e-3), (0, 3e-3), (4, 1e-3), (4, 3e-3)]
    for method in ("head-only", "fine-tune-all", "scratch"):
        assert {hp.item_rank for hp in hyperparameter_grid(method, settings, False)} == {0}
    with pytest.raises(ConfigError, match=r"item_rank_grid must be >= 0, got \(-1,\)"):
        AdaptSettings(item_rank_grid=(-1,))
    with pytest.raises(ConfigError, match="item_rank_grid must not be empty"):
        AdaptSettings(item_rank_grid=())


def test_adapter_with_an_item_patch_trains_it_and_counts_it():
    pretrained = random_pretrained(VOCAB)
    hp = Hyperparameters(1e-3, bottleneck=2, placement="serial", item_rank=3)
    setup = build_method("adapter", pretrained.encoder, ClassificationHead(DIM, 2), hp, FAST, "t")
    without = build_method("adapter", pretrained.encoder, ClassificationHead(DIM, 2),
                           dataclasses.replace(hp, item_rank=0), FAST, "t")
    patch = setup.network.encoder.item_patches["t"]
    assert count_parameters(setup.params) - count_parameters(without.params) == VOCAB * 3 + 3 * DIM
    assert all(p.requires_grad for p in patch.parameters())
    assert not setup.network.encoder.embedding.weight.requires_grad


@pytest.mark.parametrize("placement", ["serial", "parallel"])
def test_build_method_patches_with_the_chosen_placement(placement):
    pretrained = random_pretrained(VOCAB)
    hp = Hyperparameters(1e-3, bottleneck=4, placement=placement)
    setup = build_method("adapter", pretrained.encoder, ClassificationHead(DIM, 3), hp, FAST, "t")
    assert setup.network.encoder.tasks["t"].placement == placement


def test_length_batches_cover_rows_once_and_group_lengths():
    lengths = torch.tensor([5, 1, 3, 8, 2, 7, 4, 6])
    batches = length_batches(lengths, 3, torch.Generator().manual_seed(0))
    rows = torch.cat(batches)
    assert sorted(rows.tolist()) == list(range(8))
    spans = [int(lengths[b].max() - lengths[b].min()) for b in batches]
    assert max(spans) <= 2  # sorted by length before cutting


def test_batched_forward_with_trimming_matches_full_padding():
    encoder = random_pretrained().encoder
    items = torch.from_numpy(np.array([[0, 0, 0, 0, 0, 5, 6, 7], [3, 4, 5, 6, 7, 8, 9, 10],
                                       [0, 0, 0, 0, 0, 0, 0, 9]]))
    with torch.no_grad():
        full = encoder.user_vector(items)
    trimmed = batched_forward(encoder.user_vector, items, batch_size=2)
    torch.testing.assert_close(trimmed, full, rtol=1e-5, atol=1e-6)


def test_parameter_counts_per_method():
    pretrained = random_pretrained()
    head_size = DIM * 2 + 2
    encoder_size = sum(p.numel() for p in pretrained.encoder.parameters())
    counts = {}
    for method in METHODS:
        hp = Hyperparameters(lr=1e-3, bottleneck=2 if method == "adapter" else None)
        setup = build_method(method, pretrained.encoder, ClassificationHead(DIM, 2), hp, FAST, "t")
        counts[method] = count_parameters(setup.params)
    assert counts["head-only"] == head_size
    assert counts["fine-tune-all"] == encoder_size + head_size
    assert counts["scratch"] == counts["fine-tune-all"]
    # per block: 2 patches (D*b + b + b*D + D) and 2 layer norms (2 * D)
    patches = 2 * (2 * (DIM * 2 + 2 + 2 * DIM + DIM) + 2 * 2 * DIM)
    assert counts["adapter"] == patches + head_size
    assert counts["adapter"] < 0.2 * counts["fine-tune-all"]


def test_task_fit_reports_its_trainable_parameters(labelled):
    dataset, users, labels, classes = labelled
    settings = dataclasses.replace(FAST, max_epochs=1, bottleneck_grid=(2,))
    fit = fit_profile_task("adapter", random_pretrained(), dataset, users, labels, classes,
                           settings, MAX_LEN)
    assert fit.trainable_parameters == fit.encoder_parameters + DIM * 2 + 2
    assert fit.encoder_parameters == count_parameters(fit.network.encoder.task_parameters("task"))


def test_adapter_leaves_backbone_parameters_and_outputs_untouched(labelled):
    dataset, users, labels, classes = labelled
    pretrained = random_pretrained()
    inputs = profile_inputs(dataset, users, MAX_LEN)
    before_state = backbone_state(pretrained.encoder)
    with torch.no_grad():
        before = pretrained.encoder.user_vector(inputs)
    fit = fit_profile_task("adapter", pretrained, dataset, users, labels, classes, FAST, MAX_LEN,
                           task_name="gender", shared=True)
    assert "gender" in pretrained.encoder.tasks
    after_state = backbone_state(pretrained.encoder)
    assert before_state.keys() == after_state.keys()
    assert all(torch.equal(before_state[k], after_state[k]) for k in before_state)
    with torch.no_grad():
        assert torch.equal(pretrained.encoder.user_vector(inputs), before)
        # ... while the task's own path did change
        assert not torch.equal(pretrained.encoder.user_vector(inputs, task="gender"), before)
    assert fit.network.encoder is pretrained.encoder


def test_fine_tune_all_never_mutates_the_pretrained_encoder(labelled):
    dataset, users, labels, classes = labelled
    pretrained = random_pretrained()
    before = {k: v.clone() for k, v in pretrained.encoder.state_dict().items()}
    fit = fit_profile_task("fine-tune-all", pretrained, dataset, users, labels, classes, FAST,
                           MAX_LEN)
    assert fit.network.encoder is not pretrained.encoder
    assert all(torch.equal(v, pretrained.encoder.state_dict()[k]) for k, v in before.items())
    after = fit.network.encoder.state_dict()
    assert any(not torch.equal(after[k], v) for k, v in before.items())


def _task_outputs(fit, dataset, users) -> torch.Tensor:
    fit.network.eval()
    return batched_forward(fit.network, profile_inputs(dataset, users, MAX_LEN))


def test_many_tasks_on_one_backbone_never_forget(labelled):
    dataset, users, labels, classes = labelled
    pretrained = random_pretrained()
    fit_a = fit_profile_task("adapter", pretrained, dataset, users, labels, classes, FAST, MAX_LEN,
                             task_name="a", shared=True)
    a_before = _task_outputs(fit_a, dataset, users)
    # task B: other labels, other bottleneck settings, same backbone object
    flipped = np.where(labels == "a", "b", "a")
    fit_b = fit_profile_task("adapter", pretrained, dataset, users, flipped, classes, FAST,
                             MAX_LEN, task_name="b", shared=True)
    b_first = _task_outputs(fit_b, dataset, users)
    assert torch.equal(_task_outputs(fit_a, dataset, users), a_before)
    # a head-only task on the same backbone, then retraining B with another seed
    fit_profile_task("head-only", pretrained, dataset, users, labels, classes, FAST, MAX_LEN,
                     task_name="c", shared=True)
    fit_b2 = fit_profile_task("adapter", pretrained, dataset, users, flipped, classes, FAST,
                              MAX_LEN, seed=1, task_name="b", shared=True)
    assert torch.equal(_task_outputs(fit_a, dataset, users), a_before)
    assert not torch.equal(_task_outputs(fit_b2, dataset, users), b_first)
    assert sorted(pretrained.encoder.tasks) == ["a", "b"]


@pytest.mark.parametrize("item_rank", [0, 2])
def test_reset_task_restores_identity_patches(item_rank):
    encoder = random_pretrained().encoder
    items = torch.randint(NUM_RESERVED, VOCAB, (4, MAX_LEN))
    add_or_reset_task(encoder, "t", 4, "serial", True, item_rank)
    with torch.no_grad():
        for param in encoder.task_parameters("t"):
            param.add_(0.5)
        assert not torch.equal(encoder.user_vector(items, "t"), encoder.user_vector(items))
        add_or_reset_task(encoder, "t", 4, "serial", True, item_rank)
        assert torch.equal(encoder.user_vector(items, "t"), encoder.user_vector(items))
    with pytest.raises(ValueError, match="different spec"):
        add_or_reset_task(encoder, "t", 8, "serial", True, item_rank)
    with pytest.raises(ValueError, match="different spec"):
        add_or_reset_task(encoder, "t", 4, "serial", True, item_rank + 1)


def test_fit_once_reuses_a_probe_only_for_the_same_vectors_and_hyperparameters():
    calls = []

    def probe(head, vectors, hp):
        calls.append(hp.class_weight)
        with torch.no_grad():
            head.linear.weight.fill_(float(len(calls)))

    init = fit_once(probe, reads=lambda hp: hp.class_weight)
    hp = Hyperparameters(lr=1e-3, class_weight=1.0)
    vectors = torch.randn(6, DIM)
    first, again = ClassificationHead(DIM, 2), ClassificationHead(DIM, 2)
    init(first, vectors, hp)
    init(again, vectors.clone(), dataclasses.replace(hp, lr=3e-3))  # lr is not read: reused
    assert calls == [1.0]
    assert torch.equal(again.linear.weight, first.linear.weight)
    other = ClassificationHead(DIM, 2)
    init(other, vectors + 1e-3, hp)  # different vectors: fitted again
    init(other, vectors, dataclasses.replace(hp, class_weight=0.5))  # read hyperparameter
    assert calls == [1.0, 1.0, 0.5]
    assert torch.equal(other.linear.weight, torch.full_like(other.linear.weight, 3.0))


@pytest.mark.parametrize("item_rank", [0, 2])
def test_final_payload_rebuilds_the_task_on_a_fresh_encoder(labelled, item_rank):
    dataset, users, labels, classes = labelled
    pretrained = random_pretrained()
    settings = dataclasses.replace(FAST, item_rank_grid=(item_rank,))
    fit = fit_profile_task("adapter", pretrained, dataset, users, labels, classes, settings,
                           MAX_LEN, task_name="gender", shared=True)
    outputs = ProfileOutputs("gender", None, tuple(classes.tolist()), None, None)
    payload = task_artifact(fit, pretrained, outputs, MAX_LEN).to_payload()
    assert payload["spec"]["bottleneck"] == FAST.bottleneck_grid[0]
    assert payload["spec"]["item_rank"] == item_rank
    assert ("item_patches.gender.items" in payload["patch_state"]) == (item_rank > 0)
    assert payload["labels"] == ["a", "b"]
    fresh = random_pretrained().encoder  # same seed: same backbone weights
    fresh.add_task("gender", **payload["spec"])
    missing, unexpected = fresh.load_state_dict(payload["patch_state"], strict=False)
    assert not unexpected and all(".gender." not in k for k in missing)
    head = ClassificationHead(DIM, 2)
    head.load_state_dict(payload["head_state"])
    rebuilt = TaskNetwork(fresh, head, "gender").eval()
    inputs = profile_inputs(dataset, users, MAX_LEN)
    assert torch.equal(batched_forward(rebuilt, inputs), _task_outputs(fit, dataset, users))
