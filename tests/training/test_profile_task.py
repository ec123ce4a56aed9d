"""training.profile_task: P2 heads, class weighting and the linear-probe start."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from adapt_helpers import (
    DIM,
    FAST,
    MAX_LEN,
    labelled_data,
    random_pretrained,
)

from uservec.contract.ids import PAD_ID
from uservec.training import profile_task
from uservec.training.adapt import (
    METHODS,
    AdaptSettings,
    Hyperparameters,
    batched_forward,
    hyperparameter_grid,
    run_method,
)
from uservec.training.baselines.logistic import C_GRID
from uservec.training.model import ClassificationHead
from uservec.training.profile_task import (
    class_weights,
    fit_profile_task,
    predict_profile,
    predict_profile_rules,
    prior_shift,
    probe_head,
    profile_inputs,
    profile_problem,
    profile_score,
)


def test_class_weights_balanced_and_unweighted():
    codes = np.array([0, 0, 0, 1])
    np.testing.assert_allclose(class_weights(codes, 3, 1.0).numpy(), [4 / 6, 2.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(class_weights(codes, 3, 0.0).numpy(), [1.0, 1.0, 0.0])


def test_prior_shift_is_power_times_log_frequency_and_excludes_absent_classes():
    codes = np.array([0, 0, 0, 1])
    np.testing.assert_allclose(prior_shift(codes, 3, 1.0), [np.log(0.75), np.log(0.25), -np.inf])
    np.testing.assert_allclose(prior_shift(codes, 3, 0.5)[:2], 0.5 * np.log([0.75, 0.25]))
    np.testing.assert_array_equal(prior_shift(codes, 3, 0.0), [0.0, 0.0, -np.inf])


def test_prior_shift_turns_a_balanced_probe_into_the_accuracy_rule():
    """On imbalanced, overlapping classes the class-weighted head over-predicts the rare class;
    shifted by the log prior it decides like the unweighted posterior, and is more accurate."""
    rng = np.random.default_rng(0)

    def sample(n):
        codes = (rng.random(n) < 0.15).astype(np.int64)  # class 1 is rare
        vectors = rng.normal(0.0, 1.0, (n, DIM))
        vectors[:, 0] += 1.2 * codes
        return vectors, codes

    vectors, codes = sample(600)
    head = ClassificationHead(DIM, 2, dropout=0.0)
    probe_head(head, vectors, codes, 2, power=1.0, metric="accuracy")
    test_vectors, test_codes = sample(4000)
    with torch.no_grad():
        logits = head(torch.from_numpy(test_vectors).float()).numpy()
    as_trained = logits.argmax(1)
    adjusted = (logits + prior_shift(codes, 2, 1.0)).argmax(1)
    assert as_trained.mean() > 0.3  # the balanced rule calls about half the users rare
    assert adjusted.mean() < 0.1
    assert np.mean(adjusted == test_codes) > np.mean(as_trained == test_codes) + 0.1


def test_profile_score_reads_each_metric_under_its_decision_rule():
    truth = np.array([0, 0, 0, 1])
    rules = {"as_trained": np.array([1, 1, 0, 1]), "prior_adjusted": np.array([0, 0, 0, 0])}
    # accuracy: prior-adjusted 3/4 (as trained it would be 2/4)
    assert profile_score(truth, rules, 2, "accuracy") == pytest.approx(0.75)
    # macro-F1 as trained: class 0 P=1 R=1/3 F=0.5, class 1 P=1/3 R=1 F=0.5 (adjusted: 0.43)
    assert profile_score(truth, rules, 2, "macro_f1") == pytest.approx(0.5)
    assert profile_score(truth, rules, 2, "mean") == pytest.approx(0.625)
    # one prediction serves both metrics
    assert profile_score(truth, rules["as_trained"], 2, "accuracy") == pytest.approx(0.5)


def test_validation_scores_accuracy_on_the_prior_adjusted_argmax():
    """Early stopping and the grid judge a class-weighted head by the rule the report tests."""
    codes = np.array([0] * 9 + [1])  # training prior 0.9 / 0.1: shift log 0.9 - log 0.1 = 2.2
    valid_codes = np.array([0, 0, 0, 1])
    logits = torch.tensor([[0.0, 1.0], [0.0, 1.5], [0.0, -1.0], [0.0, 3.0]])
    inputs = torch.zeros(10, MAX_LEN, dtype=torch.long)
    settings = dataclasses.replace(FAST, select_metric="accuracy")
    problem = profile_problem(inputs, codes, 2, settings, DIM, torch.zeros(4, MAX_LEN), valid_codes)
    head = torch.nn.Identity()
    balanced, unweighted = (Hyperparameters(lr=1e-3, class_weight=w) for w in (1.0, 0.0))
    weighted = problem.validate(lambda _: logits, head, balanced)
    # as trained: [1, 1, 0, 1] -> 2/4; prior-adjusted (+2.2 on class 0): [0, 0, 0, 1] -> 4/4
    assert weighted == pytest.approx(1.0)
    # unweighted: nothing to undo, both rules are the argmax
    assert problem.validate(lambda _: logits, head, unweighted) == pytest.approx(0.5)


def test_predict_profile_rules_shift_one_set_of_logits(dataset_from_sequences):
    dataset, users, labels, classes = labelled_data(dataset_from_sequences, 120)
    fit = fit_profile_task("head-only", random_pretrained(), dataset, users[:80], labels[:80],
                           classes, dataclasses.replace(FAST, max_epochs=2), MAX_LEN)
    codes = np.searchsorted(classes, labels[:80])
    power = fit.hyperparameters.class_weight
    np.testing.assert_array_equal(fit.logit_shift, prior_shift(codes, classes.size, power))
    rules = predict_profile_rules(fit, dataset, users[80:], MAX_LEN)
    np.testing.assert_array_equal(rules["as_trained"],
                                  predict_profile(fit, dataset, users[80:], MAX_LEN))
    logits = profile_task.profile_logits(fit, dataset, users[80:], MAX_LEN)
    np.testing.assert_array_equal(rules["prior_adjusted"],
                                  classes[(logits + fit.logit_shift).argmax(1)])


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
    # competing: when training only makes validation worse (a step size that wrecks the head),
    # early stopping keeps the untrained probe, epoch 0
    wrecked = dataclasses.replace(hp, lr=1e3)
    setup, result = run_method("adapter", pretrained, problem, wrecked, settings, "t", 0, epochs=3)
    assert [h["epoch"] for h in result.history][:2] == [0, 1]
    assert max(h["valid"] for h in result.history[1:]) < result.history[0]["valid"]
    assert result.best_epoch == 0
    assert torch.equal(setup.network.head.linear.weight, head.linear.weight)
    with pytest.raises(ValueError, match="head_init: 'zeros' is not allowed"):
        AdaptSettings(head_init="zeros")  # type: ignore[arg-type]


def test_a_tuning_grid_fits_the_profile_probe_once(labelled, monkeypatch):
    dataset, users, labels, _ = labelled
    fitted = []
    real = profile_task.probe_head
    monkeypatch.setattr(profile_task, "probe_head",
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


def test_inputs_keep_the_latest_events_left_padded(labelled):
    dataset, users, *_ = labelled
    inputs = profile_inputs(dataset, users[:3], MAX_LEN)
    for row, user in enumerate(users[:3]):
        sequence = dataset.sequence(int(user))[-MAX_LEN:]
        assert inputs[row, -len(sequence):].tolist() == sequence.tolist()
        assert (inputs[row, : MAX_LEN - len(sequence)] == PAD_ID).all()
