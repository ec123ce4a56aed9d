"""training.cross_domain_task: P3 source-only input, item tables and the ridge-probe start."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from adapt_helpers import (
    DIM,
    FAST,
    MAX_LEN,
    random_pretrained,
)
from data_helpers import random_cross_domain

from uservec.contract.ids import NUM_RESERVED
from uservec.contract.sequences import encode_batch
from uservec.training.adapt import (
    METHODS,
    Hyperparameters,
    TaskFit,
    TaskNetwork,
    batched_forward,
    build_method,
    hyperparameter_grid,
    run_method,
)
from uservec.training.baselines.cooccurrence import popularity_scorer
from uservec.training.cross_domain_task import (
    cross_domain_problem,
    cross_domain_scorer,
    fit_cross_domain_task,
    multi_positive_loss,
    source_keep,
)
from uservec.training.evaluation.cross_domain_split import cross_domain_split
from uservec.training.evaluation.ranking_eval import evaluate_cross_domain
from uservec.training.linear_probes import (
    probe_item_head,
    score_spread,
    select_ridge_lambda,
    vector_ridge,
)
from uservec.training.model import ClassificationHead


@pytest.fixture
def cross_domain():
    dataset = random_cross_domain(num_users=200, items_per_domain=12, seed=0)
    return dataset, cross_domain_split(dataset, "T")


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
    # competing: a step size that only wrecks the table leaves the untrained probe, epoch 0
    wrecked = dataclasses.replace(hp, lr=1e3)
    setup, result = run_method("adapter", pretrained, problem, wrecked, settings, "t", 0, epochs=3)
    assert max(h["valid"] for h in result.history[1:]) < result.history[0]["valid"]
    assert result.best_epoch == 0
    torch.testing.assert_close(setup.network.head.item_embedding, head.item_embedding)


def test_score_spread_is_the_std_of_the_score_matrix_without_building_it():
    rng = np.random.default_rng(0)
    vectors, weight = rng.normal(size=(37, 5)) + 2.0, rng.normal(size=(11, 5))
    bias = rng.normal(size=11)
    assert score_spread(vectors, weight, bias) == pytest.approx(
        float((vectors @ weight.T + bias).std()), rel=1e-10)
    assert score_spread(vectors[:0], weight, bias) == 0.0
