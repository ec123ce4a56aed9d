from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from data_helpers import random_cross_domain

import training.adapt
from training.adapt import (
    METHODS,
    AdaptSettings,
    Hyperparameters,
    Pretrained,
    TaskFit,
    TaskNetwork,
    adapt_settings,
    add_or_reset_task,
    batched_forward,
    build_method,
    class_weights,
    count_parameters,
    cross_domain_problem,
    cross_domain_scorer,
    final_payload,
    fit_cross_domain_task,
    fit_once,
    fit_profile_task,
    hyperparameter_grid,
    length_batches,
    multi_positive_loss,
    predict_profile,
    probe_head,
    probe_item_head,
    profile_inputs,
    profile_problem,
    run_method,
    score_spread,
    select_ridge_lambda,
    source_keep,
    vector_ridge,
)
from training.baselines import C_GRID, evaluate_cross_domain, popularity_scorer
from training.config import ConfigError, ExperimentConfig
from training.model import ClassificationHead, NextItemHead, NextItNet
from training.protocols import cross_domain_split
from uservec.ids import NUM_RESERVED, PAD_ID
from uservec.sequences import encode_batch

VOCAB, DIM, MAX_LEN = 64, 16, 8
# tiny data gives few optimizer steps: large learning rates, a faster head
FAST = AdaptSettings(max_epochs=6, patience=6, adapter_lr_grid=(3e-3,),
                     fine_tune_lr_grid=(3e-3,), scratch_lr_grid=(3e-3,), head_only_lr_grid=(3e-2,),
                     head_lr_scale=10.0)


def random_pretrained(vocab_size: int = VOCAB, seed: int = 0) -> Pretrained:
    """A randomly initialised 'pretrained' encoder (the tests need its shape, not its quality)."""
    torch.manual_seed(seed)
    encoder = NextItNet(vocab_size, DIM, (1, 2), kernel_size=3)
    head = NextItemHead(DIM, vocab_size)
    encoder.eval()
    return Pretrained(encoder, head.output.weight.detach().clone(),
                      head.output.bias.detach().clone(), "random", {})


def labelled_data(make_dataset, num_users: int):
    """Class 'a' users (2 in 3) mostly see items 2..32, class 'b' users items 33..63."""
    rng = np.random.default_rng(0)
    sequences, labels = [], []
    half = NUM_RESERVED + (VOCAB - NUM_RESERVED) // 2
    for user in range(num_users):
        label = "a" if user % 3 else "b"
        low, high = (NUM_RESERVED, half) if label == "a" else (half, VOCAB)
        length = int(rng.integers(4, 12))
        seq = [int(rng.integers(low, high)) if rng.random() < 0.85 else
               int(rng.integers(NUM_RESERVED, VOCAB)) for _ in range(length)]
        sequences.append(seq)
        labels.append(label)
    dataset = make_dataset(sequences, VOCAB)
    return dataset, np.arange(num_users), np.array(labels), np.array(["a", "b"])


@pytest.fixture
def labelled(dataset_from_sequences):
    return labelled_data(dataset_from_sequences, 80)


def backbone_state(encoder: NextItNet) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in encoder.state_dict().items()
            if ".patches." not in k and ".task_norms." not in k}


def test_settings_from_config_defaults_and_unknown_keys():
    assert adapt_settings(ExperimentConfig(name="x")) == AdaptSettings()
    cfg = ExperimentConfig(name="x", extra={"adapt": {"bottleneck_grid": [8, 32], "max_epochs": 3}})
    assert adapt_settings(cfg).bottleneck_grid == (8, 32)
    with pytest.raises(ConfigError, match="bottleneck"):
        adapt_settings(ExperimentConfig(name="x", extra={"adapt": {"bottlenek": 8}}))
    with pytest.raises(ValueError, match="methods"):
        AdaptSettings(methods=("adapter", "lora"))
    with pytest.raises(ValueError, match="readout"):
        AdaptSettings(readout="max")


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
    with pytest.raises(ValueError, match=r"must be serial\|parallel: .beside."):
        AdaptSettings(placement_grid=("serial", "beside"))


@pytest.mark.parametrize("placement", ["serial", "parallel"])
def test_build_method_patches_with_the_chosen_placement(placement):
    pretrained = random_pretrained(VOCAB)
    hp = Hyperparameters(1e-3, bottleneck=4, placement=placement)
    setup = build_method("adapter", pretrained.encoder, ClassificationHead(DIM, 3), hp, FAST, "t")
    assert setup.network.encoder.tasks["t"].placement == placement


def test_class_weights_balanced_and_unweighted():
    codes = np.array([0, 0, 0, 1])
    np.testing.assert_allclose(class_weights(codes, 3, 1.0).numpy(), [4 / 6, 2.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(class_weights(codes, 3, 0.0).numpy(), [1.0, 1.0, 0.0])


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


def test_multi_positive_loss_matches_brute_force():
    torch.manual_seed(0)
    logits = torch.randn(3, 5)
    offsets = torch.tensor([0, 2, 3, 6])
    positives = torch.tensor([1, 4, 0, 2, 3, 4])
    rows = torch.tensor([2, 0])  # batch row 0 is user 2 (positives 2, 3, 4), row 1 is user 0
    log_prob = torch.log_softmax(logits[:2], 1)
    expected = -(log_prob[0, [2, 3, 4]].mean() + log_prob[1, [1, 4]].mean()) / 2
    got = multi_positive_loss(logits[:2], rows, offsets, positives)
    torch.testing.assert_close(got, expected)


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


def test_reset_task_restores_identity_patches():
    encoder = random_pretrained().encoder
    items = torch.randint(NUM_RESERVED, VOCAB, (4, MAX_LEN))
    add_or_reset_task(encoder, "t", 4, "serial", True)
    with torch.no_grad():
        for param in encoder.task_parameters("t"):
            param.add_(0.5)
        assert not torch.equal(encoder.user_vector(items, "t"), encoder.user_vector(items))
        add_or_reset_task(encoder, "t", 4, "serial", True)
        assert torch.equal(encoder.user_vector(items, "t"), encoder.user_vector(items))
    with pytest.raises(ValueError, match="different spec"):
        add_or_reset_task(encoder, "t", 8, "serial", True)


@pytest.mark.parametrize("method", METHODS)
def test_each_profile_method_learns(labelled, method):
    dataset, users, labels, _ = labelled
    pretrained = random_pretrained()
    codes = (labels == "b").astype(np.int64)
    inputs = profile_inputs(dataset, users, MAX_LEN)
    problem = profile_problem(inputs, codes, 2, FAST, DIM)
    hp = hyperparameter_grid(method, FAST, profile=True)[0]
    setup, result = run_method(method, pretrained, problem, hp, FAST, "t", 0, epochs=8)
    losses = [row["loss"] for row in result.history]
    assert losses[-1] < losses[0]
    setup.network.eval()
    predicted = batched_forward(setup.network, inputs).argmax(1).numpy()
    assert np.mean(predicted == codes) > 0.75  # the majority class is 2/3


def test_profile_fit_predicts_held_out_users_better_than_the_majority(dataset_from_sequences):
    dataset, users, labels, classes = labelled_data(dataset_from_sequences, 300)
    settings = dataclasses.replace(FAST, max_epochs=8, patience=3, batch_size=32)
    train, test = users[:200], users[200:]
    fit = fit_profile_task("fine-tune-all", random_pretrained(), dataset, train, labels[:200],
                           classes, settings, MAX_LEN)
    assert fit.hyperparameters.epochs is not None
    assert [row["epoch"] for row in fit.tuning] == [fit.hyperparameters.epochs]
    predicted = predict_profile(fit, dataset, test, MAX_LEN)
    assert set(predicted) <= {"a", "b"}
    majority = max(np.mean(labels[200:] == "a"), np.mean(labels[200:] == "b"))
    assert np.mean(predicted == labels[200:]) > majority + 0.1


def test_class_weighting_raises_minority_recall(labelled):
    dataset, users, labels, _ = labelled
    codes = (labels == "b").astype(np.int64)
    inputs = profile_inputs(dataset, users, MAX_LEN)
    recalls = []
    for power in (0.0, 1.0):
        hp = Hyperparameters(lr=1e-2, class_weight=power)
        setup, _ = run_method("head-only", random_pretrained(), profile_problem(
            inputs, codes, 2, FAST, DIM), hp, FAST, "t", 0, epochs=3)
        predicted = batched_forward(setup.network, inputs).argmax(1).numpy()
        recalls.append(np.mean(predicted[codes == 1] == 1))
    assert recalls[1] > recalls[0]


def test_probe_head_equals_a_logistic_regression_on_the_raw_vectors():
    """The standardisation is folded into the weights: same predictions as sklearn's model."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    vectors = rng.normal(3.0, 5.0, (120, DIM))
    codes = (vectors[:, 0] + rng.normal(0, 2.0, 120) > 3.0).astype(np.int64) * 2  # classes 0, 2
    head = ClassificationHead(DIM, 3, dropout=0.0)
    c = probe_head(head, vectors, codes, 3, power=0.0, metric="accuracy")
    assert c in C_GRID
    with torch.no_grad():
        logits = head(torch.from_numpy(vectors).float()).numpy()
    assert set(logits.argmax(1)) <= {0, 2}  # the class without examples is never predicted
    scaled = (vectors - vectors.mean(0)) / (vectors.std(0) + 1e-6)
    reference = LogisticRegression(C=c, max_iter=1000).fit(scaled, codes)
    np.testing.assert_array_equal(logits.argmax(1), reference.predict(scaled))
    probs = torch.softmax(torch.from_numpy(logits[:, [0, 2]]), 1).numpy()
    np.testing.assert_allclose(probs, reference.predict_proba(scaled), atol=1e-4)


def test_probe_init_starts_training_from_the_probe_and_lets_it_compete(labelled):
    dataset, users, labels, _ = labelled
    codes = (labels == "b").astype(np.int64)
    inputs = profile_inputs(dataset, users, MAX_LEN)
    settings = dataclasses.replace(FAST, head_init="probe")
    problem = profile_problem(inputs[:60], codes[:60], 2, settings, DIM, inputs[60:], codes[60:])
    assert problem.validate_untrained
    hp = hyperparameter_grid("adapter", settings, profile=True)[0]
    pretrained = random_pretrained()
    setup, result = run_method("adapter", pretrained, problem, hp, settings, "t", 0, epochs=0)
    assert result.history[0]["epoch"] == 0 and "valid" in result.history[0]
    vectors = batched_forward(lambda x: pretrained.encoder.user_vector(x), inputs[:60]).numpy()
    head = ClassificationHead(DIM, 2)
    probe_head(head, vectors, codes[:60], 2, hp.class_weight, settings.select_metric)
    assert torch.equal(setup.network.head.linear.weight, head.linear.weight)
    with pytest.raises(ValueError, match="head_init"):
        AdaptSettings(head_init="zeros")


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


def test_a_tuning_grid_fits_the_profile_probe_once(labelled, monkeypatch):
    dataset, users, labels, _ = labelled
    fitted = []
    real = training.adapt.probe_head
    monkeypatch.setattr(training.adapt, "probe_head",
                        lambda *args, **kwargs: fitted.append(1) or real(*args, **kwargs))
    settings = dataclasses.replace(FAST, head_init="probe", adapter_lr_grid=(1e-3, 3e-3),
                                   max_epochs=1, refit=False)
    fit = fit_profile_task("adapter", random_pretrained(), dataset, users, labels,
                           np.array(["a", "b"]), settings, MAX_LEN)
    assert len(fit.tuning) == 2
    assert len(fitted) == 1  # one probe for both grid points (the winner is kept: no refit)


def test_probe_head_survives_inner_folds_with_a_single_class():
    """Low-label folds: a class with one row leaves some inner training folds one-class."""
    rng = np.random.default_rng(1)
    codes = np.array([0, 0, 0, 0, 0, 1])
    head = ClassificationHead(DIM, 3)
    probe_head(head, rng.normal(size=(6, DIM)), codes, 3, power=1.0, metric="macro_f1")
    assert torch.isfinite(head.linear.weight).all()
    single = ClassificationHead(DIM, 3)
    probe_head(single, rng.normal(size=(4, DIM)), np.array([2, 2, 2, 2]), 3, 1.0, "mean")
    with torch.no_grad():
        assert set(single(torch.randn(5, DIM)).argmax(1).tolist()) == {2}


# --------------------------------------------------------------------------------------------
# P3
# --------------------------------------------------------------------------------------------


@pytest.fixture
def cross_domain():
    dataset = random_cross_domain(num_users=200, items_per_domain=12, seed=0)
    return dataset, cross_domain_split(dataset, "T")


def test_source_keep_drops_target_items_and_reserved_ids(cross_domain):
    dataset, _ = cross_domain
    keep = source_keep(dataset, "T")
    assert not keep[:NUM_RESERVED].any()
    for vocab_id in range(NUM_RESERVED, dataset.vocab.size):
        assert bool(keep[vocab_id]) == (not dataset.vocab.key_of(vocab_id).startswith("T::"))


def test_cross_domain_network_ignores_target_events(cross_domain):
    dataset, split = cross_domain
    pretrained = random_pretrained(dataset.vocab.size)
    keep = source_keep(dataset, "T")
    head = ClassificationHead(DIM, 3)
    setup = build_method("adapter", pretrained.encoder, head, Hyperparameters(1e-3, bottleneck=4),
                         FAST, "t", keep)
    setup.network.eval()
    long_enough = 32  # no truncation: every source history fits in the window
    target_id = next(i for i in range(NUM_RESERVED, dataset.vocab.size) if not keep[i])
    sources = split.source_sequences(split.train_users[:5])
    # the same histories with target-domain events in the middle and as the newest event
    mixed = [np.concatenate([s[: len(s) // 2], [target_id], s[len(s) // 2 :], [target_id]])
             for s in sources]
    source = torch.from_numpy(encode_batch(sources, long_enough))
    with_target = torch.from_numpy(encode_batch(mixed, long_enough))
    with torch.no_grad():
        assert torch.equal(setup.network(with_target), setup.network(source))
        # without the filter the target events would change the user vector
        assert not torch.equal(setup.network.encoder.user_vector(with_target, "t"),
                               setup.network.encoder.user_vector(source, "t"))


@pytest.mark.parametrize("method", METHODS)
def test_each_cross_domain_method_trains(cross_domain, method):
    dataset, split = cross_domain
    pretrained = random_pretrained(dataset.vocab.size)
    keep = source_keep(dataset, "T")
    problem = cross_domain_problem(split, pretrained, FAST, MAX_LEN, keep, False)
    hp = hyperparameter_grid(method, FAST, profile=False)[0]
    _, result = run_method(method, pretrained, problem, hp, FAST, "t", 0, epochs=5)
    losses = [row["loss"] for row in result.history]
    assert losses[-1] < losses[0]


def test_cross_domain_fit_is_evaluated_through_the_protocol_path(cross_domain):
    dataset, split = cross_domain
    pretrained = random_pretrained(dataset.vocab.size)
    settings = dataclasses.replace(FAST, max_epochs=15, patience=15)
    fit = fit_cross_domain_task("adapter", pretrained, split, settings, MAX_LEN, task_name="cd",
                                shared=True)
    assert fit.network.head.item_embedding.shape[0] == split.num_candidates
    assert "cd" in pretrained.encoder.tasks
    result = evaluate_cross_domain(cross_domain_scorer(fit, MAX_LEN), split)
    assert result["evaluated_users"] == split.test_users.size
    # a user's taste in A/B predicts their T items: the fit beats popularity clearly
    popular = evaluate_cross_domain(popularity_scorer(split), split)
    assert result["ndcg@10"]["mean"] > popular["ndcg@10"]["mean"] + 0.05


def test_untrained_item_head_is_the_popularity_ranking(cross_domain):
    dataset, split = cross_domain
    pretrained = random_pretrained(dataset.vocab.size)
    keep = source_keep(dataset, "T")
    problem = cross_domain_problem(split, pretrained, FAST, MAX_LEN, keep, False)
    setup = build_method("adapter", pretrained.encoder, problem.make_head(True),
                         Hyperparameters(1e-3, bottleneck=4), FAST, "t", keep)
    scorer = cross_domain_scorer(
        TaskFit("adapter", "t", setup.network, Hyperparameters(1e-3), 0, 0, 0.0, [],
                split.candidate_keys, split), MAX_LEN)
    untrained = evaluate_cross_domain(scorer, split)
    popular = evaluate_cross_domain(popularity_scorer(split), split)
    assert untrained["per_user"]["ndcg@10"] == popular["per_user"]["ndcg@10"]


def test_item_table_can_start_from_the_pretrained_output_layer(cross_domain):
    dataset, split = cross_domain
    pretrained = random_pretrained(dataset.vocab.size)
    settings = dataclasses.replace(FAST, item_init="pretrained")
    keep = source_keep(dataset, "T")
    problem = cross_domain_problem(split, pretrained, settings, MAX_LEN, keep, False)
    head = problem.make_head(True)
    ids = torch.from_numpy(split.candidate_vocab_ids)
    torch.testing.assert_close(head.item_embedding.detach(), pretrained.output_weight[ids])
    scratch = problem.make_head(False)  # scratch has no pretrained vectors to start from
    assert not scratch.item_embedding.detach().any()


def test_vector_ridge_equals_sklearn_ridge_on_standardised_vectors_with_a_penalised_intercept():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    vectors = rng.normal(2.0, 3.0, (50, 4))
    targets = (rng.random((50, 7)) < 0.3).astype(float)
    weight, bias = vector_ridge(vectors, sp.csr_matrix(targets), lam=3.0)
    scaled = (vectors - vectors.mean(0)) / (vectors.std(0) + 1e-6)
    design = np.hstack([scaled, np.ones((50, 1))])  # the intercept is a penalised column
    reference = Ridge(alpha=3.0, fit_intercept=False).fit(design, targets)
    np.testing.assert_allclose(vectors @ weight.T + bias, reference.predict(design), atol=1e-9)


def test_ridge_lambda_is_chosen_on_a_holdout_of_the_fitted_users():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 3))
    # item j is liked by users whose first coordinate is high: a signal a small lambda keeps
    targets = sp.csr_matrix((vectors[:, :1] + rng.normal(0, 0.3, (200, 6)) > 1.0).astype(float))
    popularity = np.asarray(targets.sum(0)).ravel()
    lam, scores = select_ridge_lambda(vectors, targets, popularity, k=2, grid=(1.0, 1e6))
    assert lam == 1.0 and scores[1.0] >= scores[1e6]


def test_probe_item_head_starts_from_the_vector_ridge_and_competes_as_epoch_0(cross_domain):
    dataset, split = cross_domain
    pretrained = random_pretrained(dataset.vocab.size)
    keep = source_keep(dataset, "T")
    settings = dataclasses.replace(FAST, item_init="probe")
    problem = cross_domain_problem(split.validation, pretrained, settings, MAX_LEN, keep, True)
    assert problem.init_head is not None and problem.validate_untrained
    hp = hyperparameter_grid("adapter", settings, profile=False)[0]
    setup, result = run_method("adapter", pretrained, problem, hp, settings, "t", 0, epochs=0)
    assert result.history[0]["epoch"] == 0 and "valid" in result.history[0]
    network = TaskNetwork(pretrained.encoder, problem.make_head(True), None, keep, FAST.readout)
    vectors = batched_forward(network.user_vector, problem.inputs).double().numpy()
    targets = sp.csr_matrix(np.stack([np.isin(np.arange(split.validation.num_candidates),
                                              split.validation.target_items(int(u)))
                                      for u in split.validation.train_users]).astype(float))
    assert (targets != split.validation.target_matrix(split.validation.train_users)).nnz == 0
    head = problem.make_head(True)
    probe_item_head(head, vectors, targets, split.validation.popularity)
    torch.testing.assert_close(setup.network.head.item_embedding, head.item_embedding)
    # the scale leaves the ranking of the ridge scores as it is
    lam, _ = select_ridge_lambda(vectors, targets, split.validation.popularity)
    weight, bias = vector_ridge(vectors, targets, lam)
    with torch.no_grad():
        scores = head(torch.from_numpy(vectors).float()).numpy()
    np.testing.assert_array_equal(np.argsort(-scores[:3], 1)[:, :5],
                                  np.argsort(-(vectors[:3] @ weight.T + bias), 1)[:, :5])
    assert not problem.make_head(False).item_embedding.detach().any()  # scratch: popularity


def test_score_spread_is_the_std_of_the_score_matrix_without_building_it():
    rng = np.random.default_rng(0)
    vectors, weight = rng.normal(size=(37, 5)) + 2.0, rng.normal(size=(11, 5))
    bias = rng.normal(size=11)
    assert score_spread(vectors, weight, bias) == pytest.approx(
        float((vectors @ weight.T + bias).std()), rel=1e-10)
    assert score_spread(vectors[:0], weight, bias) == 0.0


def test_final_payload_rebuilds_the_task_on_a_fresh_encoder(labelled):
    dataset, users, labels, classes = labelled
    pretrained = random_pretrained()
    fit = fit_profile_task("adapter", pretrained, dataset, users, labels, classes, FAST, MAX_LEN,
                           task_name="gender", shared=True)
    payload = final_payload(fit, pretrained, {"labels": classes.tolist()})
    assert payload["spec"]["bottleneck"] == FAST.bottleneck_grid[0]
    assert payload["labels"] == ["a", "b"]
    fresh = random_pretrained().encoder  # same seed: same backbone weights
    fresh.add_task("gender", **payload["spec"])
    missing, unexpected = fresh.load_state_dict(payload["patch_state"], strict=False)
    assert not unexpected and all(".patches.gender." not in k for k in missing)
    head = ClassificationHead(DIM, 2)
    head.load_state_dict(payload["head_state"])
    rebuilt = TaskNetwork(fresh, head, "gender").eval()
    inputs = profile_inputs(dataset, users, MAX_LEN)
    assert torch.equal(batched_forward(rebuilt, inputs), _task_outputs(fit, dataset, users))


def test_inputs_keep_the_latest_events_left_padded(labelled):
    dataset, users, *_ = labelled
    inputs = profile_inputs(dataset, users[:3], MAX_LEN)
    for row, user in enumerate(users[:3]):
        sequence = dataset.sequence(int(user))[-MAX_LEN:]
        assert inputs[row, -len(sequence):].tolist() == sequence.tolist()
        assert (inputs[row, : MAX_LEN - len(sequence)] == PAD_ID).all()
